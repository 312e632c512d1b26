-- Each usage record tells how many upstream attempts the call took, and how each went.
ALTER TABLE usage_records ADD COLUMN attempts BIGINT NOT NULL DEFAULT 1;
ALTER TABLE usage_records ADD COLUMN attempt_log TEXT NOT NULL DEFAULT '';
