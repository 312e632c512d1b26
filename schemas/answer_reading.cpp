#include "schemas/answer_reading.hpp"

#include <string>

#include <nlohmann/json.hpp>
#include <simdjson.h>

namespace tollgate::schemas {

namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;

/// Answers up to this size are parsed by a parser kept per thread, which keeps the room it
/// grew to; larger ones by a parser of their own, freed after.
constexpr std::size_t kept_parser_limit = 64 * 1024;

/// The value of the last `key` of `object`, if any.
std::optional<element> last_member(const simdjson::dom::object& object, std::string_view key) {
  std::optional<element> found;
  for (auto field : object)
    if (field.key == key)
      found = field.value;
  return found;
}

std::optional<int64_t> integer_of(const std::optional<element>& value) {
  if (!value)
    return std::nullopt;
  if (value->type() == element_type::INT64)
    return value->get_int64().value_unsafe();
  if (value->type() == element_type::UINT64) // as nlohmann's get<int64_t> converts it
    return static_cast<int64_t>(value->get_uint64().value_unsafe());
  return std::nullopt;
}

/// The generated text of one choice (or a stream's delta).
int64_t generated_bytes(const element& choice) {
  if (choice.type() != element_type::OBJECT)
    return 0;
  int64_t bytes = 0;
  for (const char* part : {"message", "delta"}) {
    auto inner = last_member(choice.get_object().value_unsafe(), part);
    if (!inner || inner->type() != element_type::OBJECT)
      continue;
    auto fields = inner->get_object().value_unsafe();
    if (auto content = last_member(fields, "content");
        content && content->type() == element_type::STRING)
      bytes += static_cast<int64_t>(content->get_string().value_unsafe().size());
    if (auto calls = last_member(fields, "tool_calls"))
      bytes += static_cast<int64_t>(simdjson::minify(*calls).size());
  }
  return bytes;
}

answer_reading read_document(const element& doc) {
  answer_reading out;
  if (doc.type() != element_type::OBJECT)
    return out;
  out.object = true;
  auto top = doc.get_object().value_unsafe();
  if (auto usage = last_member(top, "usage"); usage && usage->type() == element_type::OBJECT) {
    out.has_usage = true;
    auto fields = usage->get_object().value_unsafe();
    out.prompt_tokens = integer_of(last_member(fields, "prompt_tokens"));
    out.completion_tokens = integer_of(last_member(fields, "completion_tokens"));
  }
  if (auto choices = last_member(top, "choices")) {
    out.has_choices = true;
    if (choices->type() == element_type::ARRAY) {
      auto list = choices->get_array().value_unsafe();
      out.choices_empty = list.size() == 0;
      for (auto choice : list)
        out.generated_bytes += generated_bytes(choice);
    }
  }
  return out;
}

std::optional<answer_reading> read_parsed(simdjson::simdjson_result<element> parsed) {
  element doc;
  if (std::move(parsed).get(doc) != simdjson::SUCCESS)
    return std::nullopt;
  return read_document(doc);
}

std::optional<answer_reading> read_fast(std::string_view text) {
  if (text.size() > kept_parser_limit) {
    simdjson::dom::parser parser;
    simdjson::padded_string copy(text);
    return read_parsed(parser.parse(copy));
  }
  // simdjson reads a little past the end of its input: parse from a copy with room for that.
  thread_local simdjson::dom::parser parser;
  thread_local std::string padded;
  padded.reserve(text.size() + simdjson::SIMDJSON_PADDING);
  padded.assign(text);
  return read_parsed(parser.parse(padded.data(), padded.size(), false));
}

} // namespace

answer_reading read_answer(std::string_view text) {
  if (auto reading = read_fast(text))
    return *reading;
  // simdjson refuses some JSON that nlohmann reads (integers beyond 64 bits, numbers out of
  // a double's range, nesting deeper than 1,024): what nlohmann reads, it writes back in a
  // form simdjson reads. Text neither reads is no object.
  auto doc = nlohmann::json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object())
    return {};
  auto canonical = doc.dump();
  if (auto reading = read_fast(canonical))
    return *reading;
  answer_reading nested; // an object too deep for simdjson: nothing to meter in it
  nested.object = true;
  return nested;
}

} // namespace tollgate::schemas
