#include <boost/test/unit_test.hpp>

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <caf/all.hpp>
#include <curl/curl.h>

#include "actors/provider/upstream_loop.hpp"
#include "http/worker_io.hpp"
#include "tests/support/mock_upstream_process.hpp"
#include "tests/support/thread_stats.hpp"
#include "tests/support/two_workers.hpp"

// The upstream loop run by the actor workers (on their io_context), against the mock
// upstream over real HTTP: where the transfers' callbacks run, timeouts kept by the loop's
// timer in the io_context, a callback that cancels its own transfer, and a loop that outlives
// the io_context.

using namespace std::chrono_literals;

namespace {

using tollgate::transfer_result;
using tollgate::transfer_spec;
using tollgate::upstream_loop;
using tollgate::test::mock_upstream;
using tollgate::test::this_thread_name;
using tollgate::test::two_workers;

/// How a transfer ended, and on which thread its on_done ran.
struct ending {
  transfer_result result;
  std::string thread;
  std::string data; ///< what on_data passed on
};

/// A chat completion from the mock: buffered, or streamed; `headers` add the mock's own.
transfer_spec chat(const mock_upstream& mock, bool stream, std::vector<std::string> headers = {}) {
  transfer_spec spec;
  spec.url = mock.base_url() + "/chat/completions";
  spec.headers = {"Content-Type: application/json"};
  spec.headers.insert(spec.headers.end(), headers.begin(), headers.end());
  spec.body = std::string(R"({"model":"mock-1","messages":[{"role":"user","content":"hi"}],)") +
              (stream ? R"("stream":true})" : R"("stream":false})");
  spec.stream = stream;
  return spec;
}

/// Sets `spec`'s callbacks to collect what the transfer passes on; the future is ready when
/// it ends.
std::future<ending> collect(transfer_spec& spec) {
  auto done = std::make_shared<std::promise<ending>>();
  auto data = std::make_shared<std::string>();
  spec.on_data = [data](uint64_t, std::string_view bytes) { data->append(bytes); };
  spec.on_done = [done, data](uint64_t, transfer_result result) {
    done->set_value({std::move(result), this_thread_name(), *data});
  };
  return done->get_future();
}

/// Starts on `l` a stream of 50 chunks 50 ms apart that its own on_data cancels at the first
/// chunk (through a plain pointer, as the gateway's callbacks do); the future is ready when it
/// ends. A stream this long is not read whole in one go, even on a busy machine.
std::future<ending> start_self_cancelling(upstream_loop& l, const mock_upstream& mock) {
  auto spec = chat(mock, true, {"x-mock-chunks: 50", "x-mock-interval-ms: 50"});
  auto ended = collect(spec);
  spec.on_data = [collect_data = spec.on_data, loop = &l](uint64_t id, std::string_view bytes) {
    collect_data(id, bytes);
    loop->cancel(id);
  };
  l.start(std::move(spec));
  return ended;
}

ending wait(std::future<ending>& f) {
  BOOST_TEST_REQUIRE((f.wait_for(15s) == std::future_status::ready),
                     "the transfer did not end within 15 s");
  return f.get();
}

/// An actor system with 2 workers, the io_context they run, a loop on it, and the mock.
struct on_workers {
  mock_upstream mock;
  two_workers cfg;
  caf::actor_system sys{cfg};
  std::unique_ptr<tollgate::http::workers_io_context> io =
      std::make_unique<tollgate::http::workers_io_context>(sys);
  std::shared_ptr<upstream_loop> loop = std::make_shared<upstream_loop>(io->io);
};

} // namespace

BOOST_AUTO_TEST_SUITE(upstream_on_workers)

BOOST_FIXTURE_TEST_CASE(transfers_end_on_the_actor_workers, on_workers) {
  std::vector<std::future<ending>> endings;
  for (int i = 0; i < 20; ++i) {
    auto spec = chat(mock, i % 2 == 1);
    endings.push_back(collect(spec));
    // Started on the workers, as the gateway's actors start them: a thread that asks turns
    // the loop itself when no other does, and a busy machine may leave this test's own thread
    // turning it just as answers arrive.
    restinio::asio_ns::post(io->io, [l = loop, s = std::make_shared<transfer_spec>(
                                                   std::move(spec))] { l->start(std::move(*s)); });
  }
  for (std::size_t i = 0; i < endings.size(); ++i) {
    auto end = wait(endings[i]);
    BOOST_TEST(end.result.curl_code == CURLE_OK, end.result.error);
    BOOST_TEST(end.result.http_status == 200);
    BOOST_TEST(end.thread == "tg-worker");
    // Streams pass their body on as it comes; buffered transfers collect it.
    const auto& body = i % 2 == 1 ? end.data : end.result.body;
    BOOST_TEST(body.find("choices") != std::string::npos, body);
  }
  BOOST_TEST(loop->active() == 0u);
}

BOOST_FIXTURE_TEST_CASE(transfers_that_end_take_their_deadlines_along, on_workers) {
  // Each transfer queues a check of its first byte (a minute ahead by default) and, once a
  // stream's answer begins, of its silence. A call that ends long before them must not leave
  // them queued: under load that was a minute of calls, about 700,000 entries at 12,000
  // calls/s.
  std::vector<std::future<ending>> endings;
  for (int i = 0; i < 20; ++i) {
    auto spec = chat(mock, i % 2 == 1);
    spec.first_byte_timeout = 60s;
    spec.idle_timeout = 120s;
    endings.push_back(collect(spec));
    loop->start(std::move(spec));
  }
  auto silent = chat(mock, false, {"x-mock-latency-ms: 5000"});
  silent.first_byte_timeout = 60s;
  auto still_waiting = collect(silent);
  auto waiting_id = loop->start(std::move(silent));
  for (auto& e : endings)
    BOOST_TEST(wait(e).result.curl_code == CURLE_OK);
  BOOST_TEST(loop->queued_checks() == 1u); // the call still waiting for its answer
  loop->cancel(waiting_id);
  auto waited = wait(still_waiting);
  BOOST_TEST(waited.result.cancelled, waited.result.error << " " << waited.result.http_status);
  BOOST_TEST(loop->queued_checks() == 0u);
}

BOOST_FIXTURE_TEST_CASE(a_transfer_started_by_an_actor_ends_on_a_worker, on_workers) {
  auto spec = chat(mock, false);
  auto ended = collect(spec);
  auto started_on = std::make_shared<std::promise<std::string>>();
  auto started = started_on->get_future();
  sys.spawn([l = loop, started_on,
             s = std::make_shared<transfer_spec>(std::move(spec))](caf::event_based_actor*) {
    started_on->set_value(this_thread_name());
    l->start(std::move(*s));
  });
  BOOST_TEST_REQUIRE((started.wait_for(15s) == std::future_status::ready));
  BOOST_TEST(started.get() == "tg-worker");
  auto end = wait(ended);
  BOOST_TEST(end.result.http_status == 200);
  BOOST_TEST(end.thread == "tg-worker");
}

BOOST_FIXTURE_TEST_CASE(a_silent_upstream_times_out_on_the_loops_timer, on_workers) {
  // The mock answers after 5 s; the transfer's first byte is due within 200 ms. Only the
  // loop's timer in the io_context can end it: no byte comes to wake it.
  auto spec = chat(mock, false, {"x-mock-latency-ms: 5000"});
  spec.first_byte_timeout = 200ms;
  auto ended = collect(spec);
  auto began = std::chrono::steady_clock::now();
  loop->start(std::move(spec));
  auto end = wait(ended);
  auto took = std::chrono::steady_clock::now() - began;
  BOOST_TEST(end.result.curl_code == CURLE_OPERATION_TIMEDOUT);
  BOOST_TEST(end.result.error == "no first token within the timeout");
  BOOST_TEST((took < 4s), "ended after the upstream answered, not on the loop's timer");
}

BOOST_FIXTURE_TEST_CASE(a_callback_may_cancel_its_own_transfer, on_workers) {
  // A stream of 50 chunks 50 ms apart, cancelled by its own on_data at the first chunk: the
  // cancel runs in the loop's turn (which holds the loop), so it is queued and applied before
  // the turn ends, not waited for.
  auto ended = start_self_cancelling(*loop, mock);
  auto end = wait(ended);
  BOOST_TEST(end.result.cancelled);
  BOOST_TEST(end.thread == "tg-worker");
  BOOST_TEST(!end.data.empty());
  BOOST_TEST(end.data.find("[DONE]") == std::string::npos, "the stream was read to its end");
  BOOST_TEST(loop->active() == 0u);
}

BOOST_FIXTURE_TEST_CASE(a_loop_may_end_right_after_a_callback_queued_a_command, on_workers) {
  // A callback's cancel leaves a command flagged for another turn after the turn that applied
  // it. A loop that ends in the moment between that turn and the next must leave no worker
  // turning a loop that is gone: before the fix, the worker spun there for ever, and the
  // io_context's end waited for it. The moment is short, so it is tried many times, each
  // loop ended as soon as its transfer's on_done has run.
  constexpr int rounds = 200;
  for (int i = 0; i < rounds; ++i) {
    auto own = loop->sibling(0);
    auto ended = start_self_cancelling(*own, mock);
    auto end = wait(ended);
    BOOST_TEST_REQUIRE(end.result.cancelled);
    own.reset();
  }
  // Every worker still turns the io_context: a transfer started now ends.
  for (int i = 0; i < 4; ++i) {
    auto spec = chat(mock, false);
    auto ended = collect(spec);
    loop->start(std::move(spec));
    BOOST_TEST(wait(ended).result.http_status == 200);
  }
}

BOOST_FIXTURE_TEST_CASE(a_loop_may_outlive_its_io_context, on_workers) {
  // The gateway's providers hold the loop; they may end after the io_context. A transfer is
  // in flight (the mock answers after 5 s) when the io_context ends: the loop stops waiting
  // in it, and ends later without touching it (ASan builds check).
  auto spec = chat(mock, false, {"x-mock-latency-ms: 5000"});
  auto ended = collect(spec);
  loop->start(std::move(spec));
  BOOST_TEST(loop->active() == 1u);
  io.reset();
  // Starting and cancelling after the io_context ended neither crashes nor blocks.
  auto late = chat(mock, false);
  auto late_ended = collect(late);
  auto id = loop->start(std::move(late));
  loop->cancel(id);
  BOOST_TEST((late_ended.wait_for(5s) == std::future_status::ready));
  loop.reset();
}

BOOST_AUTO_TEST_SUITE_END()
