#include <boost/test/unit_test.hpp>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "actors/scheduling/job_deque.hpp"

// A worker's own job queue: the owner's ends and the thieves' end, alone and at once.

namespace {

struct job {
  int id = 0;
  std::atomic<int> taken{0};
};

using deque = tollgate::job_deque<job>;

} // namespace

BOOST_AUTO_TEST_SUITE(job_deques)

BOOST_AUTO_TEST_CASE(the_owner_takes_from_the_front_and_thieves_from_the_back) {
  job jobs[4];
  deque q;
  BOOST_TEST(q.empty());
  BOOST_TEST(q.take_front() == nullptr);
  BOOST_TEST(q.take_back() == nullptr);
  q.push_back(&jobs[1]);
  q.push_back(&jobs[2]);
  q.push_front(&jobs[0]); // a job to run next
  q.push_back(&jobs[3]);
  BOOST_TEST(q.size() == 4u);
  BOOST_TEST(q.take_front() == &jobs[0]);
  BOOST_TEST(q.take_back() == &jobs[3]); // the oldest of those queued behind
  BOOST_TEST(q.take_front() == &jobs[1]);
  BOOST_TEST(q.take_back() == &jobs[2]);
  BOOST_TEST(q.empty());
  BOOST_TEST(q.take_front() == nullptr);
  BOOST_TEST(q.take_back() == nullptr);
}

BOOST_AUTO_TEST_CASE(every_job_is_taken_once_while_thieves_steal_a_long_queue) {
  // The owner queues a burst of 200,000 jobs (as an actor that answers many others at once
  // does) and works from the front while two thieves steal from the back. Each steal is one
  // step: with a queue that looked for its new back by walking from the front, this many
  // steals walked billions of entries.
  constexpr int count = 200'000;
  auto jobs = std::make_unique<job[]>(count);
  deque q;
  std::atomic<int> done{0};
  auto take = [&](job* j) {
    j->taken.fetch_add(1);
    done.fetch_add(1);
  };
  std::vector<std::thread> thieves;
  for (int t = 0; t < 2; ++t)
    thieves.emplace_back([&] {
      while (done.load() < count) {
        if (auto* j = q.take_back())
          take(j);
        else
          std::this_thread::yield();
      }
    });
  for (int i = 0; i < count; ++i) {
    jobs[i].id = i;
    if (i % 3 == 0)
      q.push_front(&jobs[i]);
    else
      q.push_back(&jobs[i]);
  }
  while (done.load() < count)
    if (auto* j = q.take_front())
      take(j);
  for (auto& t : thieves)
    t.join();
  int once = 0;
  for (int i = 0; i < count; ++i)
    once += jobs[i].taken.load() == 1 ? 1 : 0;
  BOOST_TEST(once == count);
  BOOST_TEST(q.empty());
}

BOOST_AUTO_TEST_SUITE_END()
