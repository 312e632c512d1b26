#pragma once

#include <string>
#include <string_view>

namespace tollgate::schemas {

/// `tg-<environment>-` followed by 48 hex digits (192 random bits).
std::string generate_api_key(std::string_view environment);

/// An admin key: `tg-admin-` followed by 48 hex digits.
std::string generate_admin_key();

/// Lower-case hex SHA-256; keys are stored and looked up only by this.
std::string sha256_hex(std::string_view data);

/// What a human sees of a key: its environment tag and the first random digits.
std::string key_prefix(std::string_view key);

/// Whether `key` has the shape of a tollgate API key (cheap check before any lookup).
bool is_api_key_shape(std::string_view key);

/// Random lower-case hex id with a type prefix, e.g. `usr_3f9a...` (96 random bits).
std::string random_id(std::string_view prefix);

/// An id that sorts by creation time, e.g. `req_0193a1b2c3d4...`: 12 hex digits of Unix
/// milliseconds, then 80 random bits. Rows keyed by it append to the end of their unique
/// index instead of landing on a random page, so a batch of inserts dirties few pages.
std::string time_ordered_id(std::string_view prefix);

/// Compares without leaking where the first difference is.
bool constant_time_equal(std::string_view a, std::string_view b);

} // namespace tollgate::schemas
