#include "storage/redis_client.hpp"

#include <hiredis/hiredis.h>

namespace tollgate::storage {

namespace {

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

struct reply_deleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using reply_ptr = std::unique_ptr<redisReply, reply_deleter>;

} // namespace

redis_client::redis_client(config::redis_url url, std::chrono::milliseconds timeout)
    : url_(std::move(url))
    , timeout_(timeout) {}

redis_client::~redis_client() {
  drop();
}

void redis_client::drop() {
  if (context_)
    redisFree(context_);
  context_ = nullptr;
}

redisContext* redis_client::connection() {
  if (context_)
    return context_;
  auto* c = redisConnectWithTimeout(url_.host.c_str(), url_.port, to_timeval(timeout_));
  if (!c || c->err) {
    std::string why = c ? c->errstr : "out of memory";
    if (c)
      redisFree(c);
    throw redis_error("redis: cannot connect to " + url_.host + ":" + std::to_string(url_.port) +
                      ": " + why);
  }
  redisSetTimeout(c, to_timeval(timeout_));
  context_ = c;
  auto check = [&](redisReply* raw, const char* what) {
    reply_ptr r(raw);
    if (!r || r->type == REDIS_REPLY_ERROR) {
      std::string why = r ? std::string(r->str, r->len) : std::string(context_->errstr);
      drop();
      throw redis_error(std::string("redis: ") + what + " failed: " + why);
    }
  };
  if (!url_.password.empty()) {
    if (url_.username.empty())
      check(static_cast<redisReply*>(redisCommand(c, "AUTH %s", url_.password.c_str())), "AUTH");
    else
      check(static_cast<redisReply*>(
                redisCommand(c, "AUTH %s %s", url_.username.c_str(), url_.password.c_str())),
            "AUTH");
  }
  if (url_.db != 0)
    check(static_cast<redisReply*>(redisCommand(context_, "SELECT %d", url_.db)), "SELECT");
  return context_;
}

std::optional<std::string> redis_client::get(const std::string& key) {
  auto* c = connection();
  reply_ptr r(static_cast<redisReply*>(redisCommand(c, "GET %b", key.data(), key.size())));
  if (!r) {
    std::string why = c->errstr;
    drop();
    throw redis_error("redis: GET failed: " + why);
  }
  if (r->type == REDIS_REPLY_NIL)
    return std::nullopt;
  if (r->type != REDIS_REPLY_STRING)
    throw redis_error("redis: GET answered " + std::string(r->str ? r->str : "no string"));
  return std::string(r->str, r->len);
}

void redis_client::set(const std::string& key, const std::string& value,
                       std::chrono::milliseconds ttl) {
  auto* c = connection();
  reply_ptr r(static_cast<redisReply*>(
      redisCommand(c, "SET %b %b PX %lld", key.data(), key.size(), value.data(), value.size(),
                   static_cast<long long>(std::max<int64_t>(ttl.count(), 1)))));
  if (!r) {
    std::string why = c->errstr;
    drop();
    throw redis_error("redis: SET failed: " + why);
  }
  if (r->type == REDIS_REPLY_ERROR)
    throw redis_error("redis: SET failed: " + std::string(r->str, r->len));
}

} // namespace tollgate::storage
