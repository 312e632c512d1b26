#include <boost/test/unit_test.hpp>

#include <thread>

#include "http/write_pacer.hpp"

using tollgate::http::write_pacer;

BOOST_AUTO_TEST_SUITE(write_pacers)

BOOST_AUTO_TEST_CASE(a_piece_is_written_at_once_when_no_write_is_in_flight) {
  write_pacer pacer;
  BOOST_TEST(pacer.appended());
  BOOST_TEST(!pacer.written()); // nothing waits
  BOOST_TEST(pacer.appended()); // idle again: written at once
  BOOST_TEST(!pacer.written());
}

BOOST_AUTO_TEST_CASE(pieces_appended_during_a_write_leave_together_when_it_ends) {
  write_pacer pacer;
  BOOST_TEST(pacer.appended());
  BOOST_TEST(!pacer.appended());
  BOOST_TEST(!pacer.appended());
  BOOST_TEST(pacer.written());   // the actor writes the two waiting pieces
  BOOST_TEST(!pacer.appended()); // behind that write
  BOOST_TEST(pacer.written());
  BOOST_TEST(!pacer.written()); // the last write ended with nothing waiting
  BOOST_TEST(pacer.appended());
}

// Each `true` from appended or written starts a write, and each write ends with one
// `written`: however the two threads interleave, every piece is covered by a write that
// starts after it was appended, and no two writes are in flight at once.
BOOST_AUTO_TEST_CASE(an_actor_and_a_completion_thread_never_lose_a_piece) {
  write_pacer pacer;
  std::atomic<int> writes_in_flight{0};
  std::atomic<int> most_in_flight{0};
  std::atomic<int> appended{0};
  std::atomic<int> covered{0}; // pieces appended before the latest write started
  std::atomic<bool> done{false};
  std::atomic<int> to_write{0}; // writes started and not yet ended
  auto start_write = [&] {
    covered.store(appended.load());
    int n = ++writes_in_flight;
    int most = most_in_flight.load();
    while (n > most && !most_in_flight.compare_exchange_weak(most, n)) {
    }
    ++to_write;
  };
  std::thread completions([&] {
    while (!done.load() || to_write.load() > 0) {
      if (to_write.load() == 0)
        continue;
      --to_write;
      --writes_in_flight;
      if (pacer.written())
        start_write(); // in the gateway: a message to the actor, which writes
    }
  });
  constexpr int pieces = 200'000;
  for (int i = 0; i < pieces; ++i) {
    ++appended;
    if (pacer.appended())
      start_write();
  }
  done.store(true);
  completions.join();
  BOOST_TEST(covered.load() == pieces);
  BOOST_TEST(most_in_flight.load() == 1);
}

BOOST_AUTO_TEST_SUITE_END()
