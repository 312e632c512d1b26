#include "tests/integration/harness.hpp"

#include <cctype>
#include <chrono>
#include <thread>

#include <boost/test/unit_test.hpp>
#include <curl/curl.h>
#include <sys/socket.h>

#include "config/config.hpp"
#include "storage/database.hpp"
#include "storage/ledger_repository.hpp"

namespace tollgate::test::integration {

namespace {

gateway_options with_database(store kind, gateway_options options,
                              const std::unique_ptr<scoped_pg_database>& pg) {
  if (kind == store::postgresql)
    options.database_url = pg->url();
  return options;
}

std::unique_ptr<scoped_pg_database> make_database(store kind) {
  if (kind == store::sqlite)
    return nullptr;
  return std::make_unique<scoped_pg_database>(require_pg_url());
}

int64_t count_of(soci::session& sql, const std::string& query) {
  long long value = 0;
  sql << query, soci::into(value);
  return value;
}

/// The single text column of every row of `query`, one line each.
std::string rows_of(soci::session& sql, const std::string& query) {
  std::string out;
  soci::rowset<std::string> rows = (sql.prepare << query);
  for (const auto& row : rows)
    out += row + "\n";
  return out;
}

} // namespace

test_gateway::test_gateway(store kind, gateway_options options)
    : pg_(make_database(kind))
    , gateway_(with_database(kind, std::move(options), pg_)) {
  gateway_.start();
}

http_client test_gateway::admin() const {
  auto client = gateway_.client();
  client.bearer(gateway_.admin_key());
  return client;
}

http_client test_gateway::consumer(const std::string& key) const {
  auto client = gateway_.client();
  client.bearer(key);
  return client;
}

std::unique_ptr<soci::session> test_gateway::open_db() const {
  storage::database db(config::parse_database_url(gateway_.database_url()));
  return db.open();
}

std::ostream& operator<<(std::ostream& out, const db_snapshot& s) {
  return out << "{users " << s.users << ", accounts " << s.accounts << ", api_keys " << s.api_keys
             << ", revoked_keys " << s.revoked_keys << ", ledger_entries " << s.ledger_entries
             << ", audit_rows " << s.audit_rows << ", balance_total " << s.balance_total
             << ", ledger_total " << s.ledger_total << ", suspended_users " << s.suspended_users
             << ", last_user_update " << s.last_user_update << "}\nusers:\n"
             << s.user_rows << "keys:\n"
             << s.key_rows;
}

db_snapshot take_snapshot(soci::session& sql) {
  db_snapshot s;
  s.users = count_of(sql, "SELECT COUNT(*) FROM users");
  s.accounts = count_of(sql, "SELECT COUNT(*) FROM accounts");
  s.api_keys = count_of(sql, "SELECT COUNT(*) FROM api_keys");
  s.revoked_keys = count_of(sql, "SELECT COUNT(*) FROM api_keys WHERE revoked_at <> 0");
  s.ledger_entries = count_of(sql, "SELECT COUNT(*) FROM ledger_entries");
  s.audit_rows = count_of(sql, "SELECT COUNT(*) FROM audit_log");
  s.balance_total = count_of(sql, "SELECT CAST(COALESCE(SUM(balance), 0) AS BIGINT) FROM accounts");
  s.ledger_total =
      count_of(sql, "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger_entries");
  s.suspended_users = count_of(sql, "SELECT COUNT(*) FROM users WHERE suspended <> 0");
  s.last_user_update =
      count_of(sql, "SELECT CAST(COALESCE(MAX(updated_at), 0) AS BIGINT) FROM users");
  s.user_rows = rows_of(sql, "SELECT id || ' ' || name || ' ' || email || ' suspended ' || "
                             "suspended || ' limits ' || rpm || ' ' || tpm || ' ' || rpd || "
                             "' updated ' || updated_at FROM users ORDER BY id");
  s.key_rows = rows_of(sql, "SELECT id || ' ' || user_id || ' ' || name || ' ' || environment || "
                            "' limits ' || rpm || ' ' || tpm || ' ' || rpd || ' models ' || "
                            "models || ' ips ' || allowed_ips || ' expires ' || expires_at || "
                            "' revoked ' || revoked_at FROM api_keys ORDER BY id");
  return s;
}

std::vector<schemas::ledger_entry> ledger_of(soci::session& sql, const std::string& user_id) {
  auto newest_first = storage::ledger_repository(sql).list(user_id, 1'000'000, 0);
  return {newest_first.rbegin(), newest_first.rend()};
}

int64_t stored_balance(soci::session& sql, const std::string& user_id) {
  auto balance = storage::ledger_repository(sql).balance(user_id);
  BOOST_TEST_REQUIRE(balance.has_value(), "user " << user_id << " has no account row");
  return *balance;
}

int64_t check_ledger_invariants(soci::session& sql, const std::string& user_id) {
  auto balance = stored_balance(sql, user_id);
  BOOST_TEST(storage::ledger_repository(sql).sum(user_id) == balance);
  int64_t running = 0;
  for (const auto& entry : ledger_of(sql, user_id)) {
    BOOST_TEST_CONTEXT("ledger entry " << entry.id << " (" << entry.request_id << ")") {
      running += entry.amount;
      BOOST_TEST(entry.balance_after == running);
      BOOST_TEST(entry.balance_after >= 0);
      BOOST_TEST(entry.amount != 0);
    }
  }
  BOOST_TEST(running == balance);
  return balance;
}

std::string dump(const nlohmann::json& body) {
  return body.dump();
}

nlohmann::json create_user(http_client& admin, const std::string& name, const std::string& email) {
  auto response = admin.post("/admin/users", dump({{"name", name}, {"email", email}}));
  BOOST_TEST_REQUIRE(response.status == 201, "POST /admin/users: " << response.body);
  return response.json();
}

http_response post_credits(http_client& admin, const std::string& user_id, int64_t amount,
                           const std::string& reason, const std::string& idempotency_key) {
  nlohmann::json body{{"amount", amount}};
  if (!reason.empty())
    body["reason"] = reason;
  header_list headers;
  if (!idempotency_key.empty())
    headers.emplace_back("Idempotency-Key", idempotency_key);
  return admin.post("/admin/users/" + user_id + "/credits", dump(body), headers);
}

nlohmann::json add_credits(http_client& admin, const std::string& user_id, int64_t amount,
                           const std::string& reason) {
  auto response = post_credits(admin, user_id, amount, reason);
  BOOST_TEST_REQUIRE(response.status == 201,
                     "POST credits " << amount << " to " << user_id << ": " << response.body);
  return response.json();
}

nlohmann::json create_key(http_client& admin, const std::string& user_id,
                          const nlohmann::json& body) {
  auto response = admin.post("/admin/users/" + user_id + "/keys", dump(body));
  BOOST_TEST_REQUIRE(response.status == 201, "POST keys " << body.dump() << ": " << response.body);
  return response.json();
}

void expect_error(const http_response& response, long status, const std::string& type,
                  const std::string& code, const std::optional<std::string>& param,
                  const std::string& what) {
  BOOST_TEST_CONTEXT(what << " -> " << response.status << " " << response.body) {
    BOOST_TEST(response.status == status);
    BOOST_TEST(!response.header("x-request-id").empty());
    BOOST_TEST(response.header("content-type").starts_with("application/json"));
    // Not fatal: the remaining cases of a table still run when one answers wrongly.
    auto body = nlohmann::json::parse(response.body, nullptr, false);
    bool shaped =
        body.is_object() && body.size() == 1 && body.contains("error") && body["error"].is_object();
    BOOST_TEST(shaped, "not an OpenAI-shaped error");
    if (!shaped)
      return;
    const auto& error = body["error"];
    BOOST_TEST(error.size() == 4u);
    BOOST_TEST((error.value("message", "").size() > 0));
    BOOST_TEST(error.value("type", "") == type);
    BOOST_TEST(error.value("code", "") == code);
    BOOST_TEST(error.contains("param"));
    auto got = error.value("param", nlohmann::json());
    BOOST_TEST(got.dump() == (param ? nlohmann::json(*param) : nlohmann::json()).dump());
  }
}

int64_t unix_now() {
  using namespace std::chrono;
  return duration_cast<seconds>(system_clock::now().time_since_epoch()).count();
}

nlohmann::json mock_gateway_config(const std::string& mock_base_url) {
  using nlohmann::json;
  return {{"providers",
           json::array({{{"name", "mock"}, {"kind", "openai"}, {"base_url", mock_base_url}},
                        {{"name", "local-echo"}, {"kind", "echo"}}})},
          {"models",
           json::array({{{"name", "gpt-mock"},
                         // Tests inject faults back to back: a breaker that never trips keeps
                         // each fault's own answer visible (breakers have tests of their own).
                         {"deployments",
                          json::array({{{"provider", "mock"},
                                        {"model", "mock-1"},
                                        {"breaker", {{"failures", 1000}, {"min_calls", 1000}}}}})},
                         {"input_price", 1'000'000},
                         {"output_price", 2'000'000}},
                        {{"name", "echo-1"},
                         {"deployments", json::array({{{"provider", "local-echo"}}})},
                         {"input_price", 0},
                         {"output_price", 0}}})}};
}

gateway_options options_with_config(const nlohmann::json& config) {
  gateway_options options;
  options.config_json = config.dump();
  return options;
}

metered_user make_metered_user(http_client& admin, const std::string& email, int64_t credits,
                               const nlohmann::json& key_body) {
  metered_user u;
  u.id = create_user(admin, "User " + email, email)["id"].get<std::string>();
  if (credits != 0)
    add_credits(admin, u.id, credits, "opening balance");
  auto key = create_key(admin, u.id, key_body);
  u.key = key["key"].get<std::string>();
  u.key_id = key["id"].get<std::string>();
  return u;
}

nlohmann::json chat_body(const std::string& model, const std::string& prompt, int64_t max_tokens,
                         bool stream, bool include_usage) {
  nlohmann::json body{
      {"model", model},
      {"messages", nlohmann::json::array({{{"role", "user"}, {"content", prompt}}})}};
  if (max_tokens > 0)
    body["max_tokens"] = max_tokens;
  if (stream)
    body["stream"] = true;
  if (include_usage)
    body["stream_options"] = {{"include_usage", true}};
  return body;
}

nlohmann::json me_of(const test_gateway& gw, const std::string& key) {
  auto response = gw.consumer(key).get("/v1/me");
  BOOST_TEST_REQUIRE(response.status == 200, "GET /v1/me: " << response.body);
  return response.json();
}

std::vector<std::string> sse_data(const std::string& body) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos < body.size()) {
    auto end = body.find("\n\n", pos);
    auto event = body.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    pos = end == std::string::npos ? body.size() : end + 2;
    std::string data;
    std::size_t line_start = 0;
    while (line_start < event.size()) {
      auto line_end = event.find('\n', line_start);
      auto line = event.substr(line_start, line_end == std::string::npos ? std::string::npos
                                                                         : line_end - line_start);
      line_start = line_end == std::string::npos ? event.size() : line_end + 1;
      if (line.starts_with("data:")) {
        auto value = line.substr(5);
        if (value.starts_with(' '))
          value.erase(0, 1);
        data += data.empty() ? value : "\n" + value;
      }
    }
    if (!data.empty())
      out.push_back(std::move(data));
  }
  return out;
}

std::vector<usage_row> usage_of(soci::session& sql, const std::string& user_id) {
  std::vector<usage_row> rows;
  usage_row r;
  soci::statement st =
      (sql.prepare << "SELECT request_id, user_id, key_id, model, deployment, prompt_tokens, "
                      "completion_tokens, cost, latency_ms, ttft_ms, status FROM usage_records "
                      "WHERE user_id = :u ORDER BY id",
       soci::use(user_id), soci::into(r.request_id), soci::into(r.user_id), soci::into(r.key_id),
       soci::into(r.model), soci::into(r.deployment), soci::into(r.prompt_tokens),
       soci::into(r.completion_tokens), soci::into(r.cost), soci::into(r.latency_ms),
       soci::into(r.ttft_ms), soci::into(r.status));
  st.execute();
  while (st.fetch())
    rows.push_back(r);
  return rows;
}

std::optional<usage_row> usage_row_of(soci::session& sql, const std::string& request_id) {
  std::string user_id;
  sql << "SELECT user_id FROM usage_records WHERE request_id = :r", soci::use(request_id),
      soci::into(user_id);
  if (!sql.got_data())
    return std::nullopt;
  for (auto& row : usage_of(sql, user_id))
    if (row.request_id == request_id)
      return row;
  return std::nullopt;
}

bool wait_until(std::chrono::milliseconds timeout, const std::function<bool()>& done) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (done())
      return true;
    if (std::chrono::steady_clock::now() >= deadline)
      return false;
    std::this_thread::sleep_for(std::chrono::milliseconds{25});
  }
}

namespace {

struct stream_reader {
  abandoned_stream result;
  const stream_client* client = nullptr;
};

std::size_t on_stream_header(char* data, std::size_t size, std::size_t count, void* user) {
  auto* reader = static_cast<stream_reader*>(user);
  std::string line(data, size * count);
  auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    for (auto& c : name)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (name == "x-request-id") {
      auto value = line.substr(colon + 1);
      auto first = value.find_first_not_of(" \t");
      auto last = value.find_last_not_of(" \t\r\n");
      reader->result.request_id =
          first == std::string::npos ? std::string() : value.substr(first, last - first + 1);
    }
  }
  return size * count;
}

std::size_t on_stream_body(char* data, std::size_t size, std::size_t count, void* user) {
  auto* reader = static_cast<stream_reader*>(user);
  auto& received = reader->result.received;
  received.append(data, size * count);
  // Complete events only: each ends with a blank line.
  std::size_t complete = 0;
  for (auto pos = received.find("\n\n"); pos != std::string::npos;
       pos = received.find("\n\n", pos + 2))
    ++complete;
  reader->result.events = complete;
  // Returning less than given makes libcurl abort the transfer and drop the connection.
  return reader->client->on_piece(reader->result) ? size * count : 0;
}

int set_receive_buffer(void* bytes, curl_socket_t socket, curlsocktype) {
  int size = *static_cast<const int*>(bytes);
  if (size > 0)
    setsockopt(socket, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  return CURL_SOCKOPT_OK;
}

} // namespace

abandoned_stream read_stream(const std::string& base_url, const std::string& path,
                             const std::string& key, const std::string& body,
                             const stream_client& client, std::chrono::milliseconds timeout) {
  stream_reader reader;
  reader.client = &client;
  std::unique_ptr<CURL, void (*)(CURL*)> easy(curl_easy_init(), curl_easy_cleanup);
  BOOST_TEST_REQUIRE(easy != nullptr);
  auto url = base_url + path;
  auto auth = "Authorization: Bearer " + key;
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, auth.c_str());
  headers = curl_slist_append(headers, "Content-Type: application/json");
  headers = curl_slist_append(headers, "Accept: text/event-stream");
  std::unique_ptr<curl_slist, void (*)(curl_slist*)> header_guard(headers, curl_slist_free_all);
  CURL* e = easy.get();
  curl_easy_setopt(e, CURLOPT_URL, url.c_str());
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_stream_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, &reader);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_stream_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &reader);
  curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(e, CURLOPT_SOCKOPTFUNCTION, set_receive_buffer);
  curl_easy_setopt(e, CURLOPT_SOCKOPTDATA, &client.receive_buffer);
  curl_easy_perform(e); // CURLE_WRITE_ERROR when we left, as intended
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &reader.result.status);
  // The cleanup closes the connection: a transfer cut short leaves it unusable.
  easy.reset();
  return reader.result;
}

abandoned_stream read_stream_then_leave(const std::string& base_url, const std::string& path,
                                        const std::string& key, const std::string& body,
                                        std::size_t events, std::chrono::milliseconds timeout) {
  stream_client client{[events](const abandoned_stream& s) { return s.events < events; }};
  return read_stream(base_url, path, key, body, client, timeout);
}

} // namespace tollgate::test::integration

#include <cmath>
#include <cstdlib>
#include <set>
#include <sstream>

#include "tests/support/ports.hpp"

namespace tollgate::test::integration {

nlohmann::json failover_config(const std::string& a_url, const std::string& b_url,
                               const nlohmann::json& a_extra, const nlohmann::json& b_extra) {
  using nlohmann::json;
  json a{{"provider", "mock-a"}, {"model", "mock-1"}, {"priority", 1}};
  json b{{"provider", "mock-b"}, {"model", "mock-1"}, {"priority", 2}};
  a.update(a_extra);
  b.update(b_extra);
  return {
      {"providers", json::array({{{"name", "mock-a"}, {"kind", "openai"}, {"base_url", a_url}},
                                 {{"name", "mock-b"}, {"kind", "openai"}, {"base_url", b_url}}})},
      {"models", json::array({{{"name", "gpt-mock"},
                               {"strategy", "priority"},
                               {"deployments", json::array({a, b})},
                               {"input_price", 1'000'000},
                               {"output_price", 2'000'000}}})},
      {"routing", {{"max_attempts", 3}, {"backoff_ms", 10}, {"max_backoff_ms", 50}}}};
}

std::string closed_port_url() {
  return "http://127.0.0.1:" + std::to_string(free_loopback_port()) + "/v1";
}

nlohmann::json provider_status(const test_gateway& gw, const std::string& deployment) {
  auto response = gw.admin().get("/admin/providers");
  BOOST_TEST_REQUIRE(response.status == 200, "GET /admin/providers: " << response.body);
  auto doc = response.json();
  for (const auto& entry : doc.value("data", nlohmann::json::array()))
    if (entry.value("deployment", "") == deployment)
      return entry;
  BOOST_TEST_REQUIRE(false,
                     "GET /admin/providers does not list " << deployment << ": " << response.body);
  return {};
}

std::optional<attempt_record> attempts_of(soci::session& sql, const std::string& request_id) {
  attempt_record r;
  long long attempts = 0;
  sql << "SELECT attempts, attempt_log FROM usage_records WHERE request_id = :r",
      soci::use(request_id), soci::into(attempts), soci::into(r.log);
  if (!sql.got_data())
    return std::nullopt;
  r.attempts = attempts;
  return r;
}

std::size_t word_count(const std::string& text) {
  std::istringstream in(text);
  std::size_t words = 0;
  for (std::string word; in >> word;)
    ++words;
  return words;
}

stream_summary summarize_stream(const std::string& body) {
  stream_summary out;
  for (auto pos = body.find(": keep-alive\n\n"); pos != std::string::npos;
       pos = body.find(": keep-alive\n\n", pos + 1))
    ++out.keepalives;
  for (const auto& data : sse_data(body)) {
    if (data == "[DONE]") {
      out.done = true;
      continue;
    }
    auto event = nlohmann::json::parse(data, nullptr, false);
    if (!event.is_object()) {
      out.bad_events.push_back(data);
      continue;
    }
    if (event.contains("error")) {
      out.error = event["error"];
      continue;
    }
    for (const auto& choice : event.value("choices", nlohmann::json::array()))
      if (choice.contains("delta") && choice["delta"].contains("content") &&
          choice["delta"]["content"].is_string()) {
        out.text += choice["delta"]["content"].get<std::string>();
        ++out.content_events;
      }
  }
  return out;
}

namespace {

bool is_metric_name(const std::string& name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0])))
    return false;
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == ':'))
      return false;
  return true;
}

bool is_label_name(const std::string& name) {
  return is_metric_name(name) && name.find(':') == std::string::npos;
}

/// A sample value: a float, +Inf, -Inf or NaN.
std::optional<double> sample_value(const std::string& text) {
  if (text == "+Inf" || text == "Inf")
    return HUGE_VAL;
  if (text == "-Inf")
    return -HUGE_VAL;
  if (text == "NaN")
    return std::nan("");
  if (text.empty())
    return std::nullopt;
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size())
    return std::nullopt;
  return v;
}

/// Reads `{name="value",...}` from `line` at `pos` (just after the `{`); false if malformed.
bool read_labels(const std::string& line, std::size_t& pos,
                 std::map<std::string, std::string>& labels) {
  while (pos < line.size() && line[pos] != '}') {
    auto eq = line.find('=', pos);
    if (eq == std::string::npos)
      return false;
    auto name = line.substr(pos, eq - pos);
    if (!is_label_name(name) || labels.count(name) > 0 || eq + 1 >= line.size() ||
        line[eq + 1] != '"')
      return false;
    pos = eq + 2;
    std::string value;
    bool closed = false;
    while (pos < line.size()) {
      char c = line[pos++];
      if (c == '"') {
        closed = true;
        break;
      }
      if (c == '\\') {
        if (pos >= line.size())
          return false;
        char e = line[pos++];
        if (e == 'n')
          value += '\n';
        else if (e == '\\' || e == '"')
          value += e;
        else
          return false;
        continue;
      }
      value += c;
    }
    if (!closed)
      return false;
    labels[name] = value;
    if (pos < line.size() && line[pos] == ',')
      ++pos;
  }
  if (pos >= line.size())
    return false;
  ++pos; // the '}'
  return true;
}

/// The family a sample belongs to: its own name, or a histogram's or summary's base name.
std::string family_of(const prometheus_text& text, const std::string& name) {
  if (text.types.count(name) > 0)
    return name;
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    std::string s = suffix;
    if (name.size() > s.size() && name.ends_with(s)) {
      auto base = name.substr(0, name.size() - s.size());
      auto it = text.types.find(base);
      if (it != text.types.end() && (it->second == "histogram" || it->second == "summary") &&
          (s != "_bucket" || it->second == "histogram"))
        return base;
    }
  }
  return {};
}

} // namespace

std::optional<double>
prometheus_text::value(const std::string& name,
                       const std::map<std::string, std::string>& labels) const {
  for (const auto& s : samples)
    if (s.name == name && s.labels == labels)
      return s.value;
  return std::nullopt;
}

double prometheus_text::sum(const std::string& name,
                            const std::map<std::string, std::string>& match) const {
  double total = 0;
  for (const auto& s : samples) {
    if (s.name != name)
      continue;
    bool matches = true;
    for (const auto& [label, wanted] : match) {
      auto it = s.labels.find(label);
      matches = matches && it != s.labels.end() && it->second == wanted;
    }
    if (matches)
      total += s.value;
  }
  return total;
}

prometheus_text parse_prometheus(const std::string& text) {
  prometheus_text out;
  std::set<std::string> series;
  std::istringstream in(text);
  std::string line;
  int number = 0;
  auto error = [&](const std::string& what) {
    out.errors.push_back("line " + std::to_string(number) + ": " + what + ": " + line);
  };
  if (!text.empty() && text.back() != '\n')
    out.errors.push_back("the exposition does not end with a newline");
  while (std::getline(in, line)) {
    ++number;
    if (line.empty())
      continue;
    if (line[0] == '#') {
      std::istringstream words(line.substr(1));
      std::string keyword;
      std::string name;
      words >> keyword >> name;
      if (keyword != "HELP" && keyword != "TYPE")
        continue; // a plain comment
      if (!is_metric_name(name)) {
        error("bad metric name in " + keyword);
        continue;
      }
      std::string rest;
      std::getline(words, rest);
      if (!rest.empty() && rest[0] == ' ')
        rest.erase(0, 1);
      if (keyword == "HELP") {
        if (out.help.count(name) > 0)
          error("second HELP for " + name);
        out.help[name] = rest;
        continue;
      }
      static const std::set<std::string> kinds{"counter", "gauge", "histogram", "summary",
                                               "untyped"};
      if (kinds.count(rest) == 0)
        error("unknown TYPE '" + rest + "'");
      else if (out.types.count(name) > 0)
        error("second TYPE for " + name);
      else {
        for (const auto& s : out.samples)
          if (family_of(out, s.name) == name)
            error("TYPE of " + name + " after its samples");
        out.types[name] = rest;
      }
      continue;
    }
    prometheus_sample sample;
    std::size_t pos = 0;
    while (pos < line.size() && line[pos] != '{' && line[pos] != ' ')
      ++pos;
    sample.name = line.substr(0, pos);
    if (!is_metric_name(sample.name)) {
      error("bad metric name");
      continue;
    }
    if (pos < line.size() && line[pos] == '{') {
      ++pos;
      if (!read_labels(line, pos, sample.labels)) {
        error("bad labels");
        continue;
      }
    }
    if (pos >= line.size() || line[pos] != ' ') {
      error("no value");
      continue;
    }
    auto rest = line.substr(pos + 1);
    auto space = rest.find(' ');
    auto value = sample_value(rest.substr(0, space));
    if (!value) {
      error("bad value");
      continue;
    }
    if (space != std::string::npos) {
      // An optional timestamp: an integer.
      auto stamp = rest.substr(space + 1);
      bool integer = !stamp.empty();
      for (std::size_t i = 0; i < stamp.size(); ++i)
        integer = integer && (std::isdigit(static_cast<unsigned char>(stamp[i])) ||
                              (i == 0 && stamp[i] == '-'));
      if (!integer) {
        error("bad timestamp");
        continue;
      }
    }
    sample.value = *value;
    if (family_of(out, sample.name).empty())
      error("sample without a TYPE for its family");
    std::string key = sample.name;
    for (const auto& [k, v] : sample.labels)
      key += "|" + k + "=" + v;
    if (!series.insert(key).second)
      error("duplicate series");
    out.samples.push_back(std::move(sample));
  }
  return out;
}

prometheus_text scrape_metrics(const test_gateway& gw) {
  auto response = gw.anonymous().get("/metrics");
  BOOST_TEST_REQUIRE(response.status == 200, "GET /metrics: " << response.body);
  BOOST_TEST(response.header("content-type").starts_with("text/plain"));
  return parse_prometheus(response.body);
}

} // namespace tollgate::test::integration
