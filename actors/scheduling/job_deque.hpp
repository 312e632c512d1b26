#pragma once

#include <atomic>
#include <cstddef>
#include <deque>
#include <mutex>

namespace tollgate {

/// A worker's own queue of jobs: its owner adds at either end and takes from the front;
/// other workers steal from the back. Every operation is constant time under one short
/// lock, and nothing is allocated per job.
///
/// CAF 0.17's `detail::double_ended_queue`, which the workers used before, finds the new
/// back on each steal by walking the whole list from the front, while holding both of its
/// spin locks. When a worker had tens of thousands of jobs queued (the directory answering a
/// burst of passivations, one job per ended actor), the other worker's steals walked them
/// all, one steal at a time, and the owner spun on the lock for each job it queued: the
/// workers were busy for seconds and calls waited behind them.
template <class Job>
class job_deque {
public:
  void push_front(Job* job) {
    std::lock_guard<std::mutex> guard(lock_);
    jobs_.push_front(job);
    size_.store(jobs_.size(), std::memory_order_relaxed);
  }

  void push_back(Job* job) {
    std::lock_guard<std::mutex> guard(lock_);
    jobs_.push_back(job);
    size_.store(jobs_.size(), std::memory_order_relaxed);
  }

  /// The front job, or nullptr if there is none.
  Job* take_front() { return take(true); }

  /// The back job, or nullptr if there is none.
  Job* take_back() { return take(false); }

  /// Without the lock, so only a hint while other threads push or take; the takes look
  /// again under it.
  bool empty() const { return size_.load(std::memory_order_relaxed) == 0; }

  std::size_t size() const { return size_.load(std::memory_order_relaxed); }

private:
  Job* take(bool front) {
    if (empty())
      return nullptr;
    std::lock_guard<std::mutex> guard(lock_);
    if (jobs_.empty())
      return nullptr;
    Job* job = nullptr;
    if (front) {
      job = jobs_.front();
      jobs_.pop_front();
    } else {
      job = jobs_.back();
      jobs_.pop_back();
    }
    size_.store(jobs_.size(), std::memory_order_relaxed);
    return job;
  }

  std::mutex lock_;
  std::deque<Job*> jobs_;
  std::atomic<std::size_t> size_{0};
};

} // namespace tollgate
