// DecodeAhead: work runs on its thread in request order, a full queue drops its oldest, and
// destruction waits for the running work.
#include "stream/decode_ahead.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <mutex>
#include <thread>
#include <vector>

namespace backupfs {
namespace {

TEST(DecodeAheadTest, RunsRequestsInOrderOnAnotherThread) {
  std::mutex mu;
  std::vector<size_t> done;
  std::vector<std::thread::id> workers;
  std::latch both(DecodeAhead::kMaxPending);
  DecodeAhead ahead([&](size_t n) {
    {
      std::lock_guard lock(mu);
      done.push_back(n);
      workers.push_back(std::this_thread::get_id());
    }
    both.count_down();
  });
  ahead.Request(4);  // never more than kMaxPending: none is pushed out
  ahead.Request(5);
  both.wait();
  std::lock_guard lock(mu);
  EXPECT_EQ(done, (std::vector<size_t>{4, 5}));
  EXPECT_NE(workers[0], std::this_thread::get_id());
  EXPECT_EQ(workers[0], workers[1]);
}

TEST(DecodeAheadTest, AFullQueueDropsTheOldestRequest) {
  std::latch started(1), release(1);
  std::mutex mu;
  std::vector<size_t> done;
  {
    DecodeAhead ahead([&](size_t n) {
      if (n == 0) {
        started.count_down();
        release.wait();
      }
      std::lock_guard lock(mu);
      done.push_back(n);
    });
    ahead.Request(0);
    started.wait();  // 0 runs; 1 and 2 wait, 3 pushes 1 out
    for (size_t n = 1; n <= 1 + DecodeAhead::kMaxPending; ++n) ahead.Request(n);
    release.count_down();
    for (;;) {  // until the queue ran dry (the destructor would drop what waits)
      std::lock_guard lock(mu);
      if (done.size() == 1 + DecodeAhead::kMaxPending) break;
    }
  }
  EXPECT_EQ(done, (std::vector<size_t>{0, 2, 3}));
}

TEST(DecodeAheadTest, DestructionWaitsForTheRunningWorkAndDropsTheRest) {
  std::latch started(1);
  std::atomic<bool> finished{false};
  std::atomic<int> runs{0};
  {
    DecodeAhead ahead([&](size_t) {
      ++runs;
      started.count_down();
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      finished = true;
    });
    ahead.Request(1);
    ahead.Request(2);
    started.wait();
  }
  EXPECT_TRUE(finished.load());
  EXPECT_EQ(runs.load(), 1);
}

TEST(DecodeAheadTest, NoRequestNoThread) {
  DecodeAhead ahead([](size_t) { FAIL(); });
}

}  // namespace
}  // namespace backupfs
