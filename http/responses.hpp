#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <restinio/all.hpp>

#include "schemas/api_error.hpp"

namespace tollgate::http {

using request_handle = restinio::request_handle_t;
using header_list = std::vector<std::pair<std::string, std::string>>;

/// Writes a complete JSON response; every response carries the request's id.
void send_json(const request_handle& req, int status, std::string body, std::string_view request_id,
               const header_list& headers = {});

/// Counts an answer in tollgate_requests_total (ids in the path are folded away).
void count_response(std::string_view path, int status);

/// Writes an error in the OpenAI shape with its status.
void send_error(const request_handle& req, const schemas::api_error& err,
                std::string_view request_id, const header_list& headers = {});

} // namespace tollgate::http
