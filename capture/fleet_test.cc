#include "capture/fleet.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace backupfs {
namespace {

const std::vector<std::string> kHost = {"db1", "db2", "fleet-a", "fleet-b", "web"};

DomainResult Ok(const std::string& domain) {
  DomainResult r;
  r.domain = domain;
  r.level = "full";
  r.bytes_read = 100;
  r.bytes_written = 120;
  r.seconds = 1.5;
  r.outcome = DomainOutcome::kOk;
  return r;
}

TEST(SelectDomains, PlainNameSelectsOnlyItself) {
  auto s = SelectDomains({"db1"}, false, kHost);
  EXPECT_EQ(s.domains, std::vector<std::string>{"db1"});
  EXPECT_TRUE(s.unmatched.empty());
}

TEST(SelectDomains, PatternsAreShellGlobs) {
  auto s = SelectDomains({"fleet*", "db[2]"}, false, kHost);
  EXPECT_EQ(s.domains, (std::vector<std::string>{"db2", "fleet-a", "fleet-b"}));
  EXPECT_TRUE(s.unmatched.empty());
  EXPECT_EQ(SelectDomains({"?eb"}, false, kHost).domains, std::vector<std::string>{"web"});
}

TEST(SelectDomains, OverlapsAreTakenOnceAndSorted) {
  auto s = SelectDomains({"web", "fleet-b", "*b*", "fleet-b"}, false, kHost);
  EXPECT_EQ(s.domains, (std::vector<std::string>{"db1", "db2", "fleet-b", "web"}));
}

TEST(SelectDomains, PatternsMatchingNothingAreReportedAsGiven) {
  auto s = SelectDomains({"fleet*", "nope*", "gone"}, false, kHost);
  EXPECT_EQ(s.domains, (std::vector<std::string>{"fleet-a", "fleet-b"}));
  EXPECT_EQ(s.unmatched, (std::vector<std::string>{"nope*", "gone"}));
}

TEST(SelectDomains, AllTakesEveryDomain) {
  EXPECT_EQ(SelectDomains({}, true, kHost).domains, kHost);
  EXPECT_TRUE(SelectDomains({}, true, {}).domains.empty());
}

TEST(SelectDomains, PatternIsNotASubstring) {
  auto s = SelectDomains({"fleet"}, false, kHost);
  EXPECT_TRUE(s.domains.empty());
  EXPECT_EQ(s.unmatched, std::vector<std::string>{"fleet"});
}

TEST(IsDomainPattern, WildcardsOnly) {
  EXPECT_TRUE(IsDomainPattern("web*"));
  EXPECT_TRUE(IsDomainPattern("db?"));
  EXPECT_TRUE(IsDomainPattern("db[12]"));
  EXPECT_FALSE(IsDomainPattern("web-01.example"));
}

TEST(RunFleet, ResultsInTheOrderGivenAndAFailureDoesNotStopTheOthers) {
  auto results = RunFleet({"a", "b", "c"}, 2, nullptr, [](const std::string& d) {
    if (d != "b") return Ok(d);
    DomainResult r;
    r.error = "saveset is locked";
    return r;
  });
  ASSERT_EQ(results.size(), 3u);
  EXPECT_EQ(results[0].domain, "a");
  EXPECT_EQ(results[0].outcome, DomainOutcome::kOk);
  EXPECT_EQ(results[1].domain, "b");  // filled in even though the runner left it empty
  EXPECT_EQ(results[1].outcome, DomainOutcome::kFailed);
  EXPECT_EQ(results[2].outcome, DomainOutcome::kOk);
}

// Every runner waits until `parallel` of them run at once (or a timeout): more than that at
// once, or fewer ever together, fails.
void ExpectConcurrency(unsigned parallel, size_t domains, unsigned want) {
  std::mutex mu;
  std::condition_variable cv;
  unsigned running = 0, peak = 0;
  std::vector<std::string> names;
  for (size_t i = 0; i < domains; i++) names.push_back("d" + std::to_string(i));
  RunFleet(names, parallel, nullptr, [&](const std::string& d) {
    std::unique_lock<std::mutex> lock(mu);
    running++;
    peak = std::max(peak, running);
    cv.notify_all();
    // Ends as soon as `want` run together; the bound only stops a fleet that never gets there
    // (long, for threads started late on a loaded machine).
    cv.wait_for(lock, std::chrono::seconds(30), [&] { return peak >= want; });
    running--;
    return Ok(d);
  });
  EXPECT_EQ(peak, want) << "parallel " << parallel << ", " << domains << " domains";
}

TEST(RunFleet, AtMostParallelDomainsAtOnce) {
  ExpectConcurrency(2, 6, 2);
  ExpectConcurrency(4, 6, 4);
  ExpectConcurrency(8, 3, 3);  // no more threads than domains
  ExpectConcurrency(1, 3, 1);
  ExpectConcurrency(0, 3, 1);  // 0 is taken as 1
}

TEST(RunFleet, CancelStartsNoFurtherDomain) {
  std::atomic<bool> cancel{false};
  std::vector<std::string> started;
  auto results = RunFleet({"a", "b", "c"}, 1, &cancel, [&](const std::string& d) {
    started.push_back(d);
    cancel = true;  // a signal while the first one runs
    DomainResult r;
    r.error = "interrupted";
    return r;
  });
  EXPECT_EQ(started, std::vector<std::string>{"a"});
  ASSERT_EQ(results.size(), 3u);
  EXPECT_EQ(results[1].outcome, DomainOutcome::kFailed);
  EXPECT_EQ(results[1].error, "not started: interrupted by a signal");
  EXPECT_EQ(results[2].domain, "c");
}

TEST(RunFleet, AnExceptionFailsOnlyItsDomain) {
  auto results = RunFleet({"a", "b"}, 2, nullptr, [](const std::string& d) -> DomainResult {
    if (d == "a") throw std::runtime_error("bad_alloc\nsecond line");
    return Ok(d);
  });
  EXPECT_EQ(results[0].outcome, DomainOutcome::kFailed);
  EXPECT_EQ(results[0].error, "unexpected error: bad_alloc");
  EXPECT_EQ(results[1].outcome, DomainOutcome::kOk);
}

TEST(RunFleet, NoDomainsNoCalls) {
  bool called = false;
  EXPECT_TRUE(RunFleet({}, 2, nullptr, [&](const std::string& d) {
                called = true;
                return Ok(d);
              }).empty());
  EXPECT_FALSE(called);
}

TEST(FormatFleetSummary, ColumnsAlignedAndTotals) {
  DomainResult failed;
  failed.domain = "fleet-bb";
  failed.seconds = 0.014;
  failed.error = "/srv/x/fleet-bb is in use by another run";
  DomainResult skipped = Ok("c");
  skipped.level = "inc";
  skipped.bytes_read = skipped.bytes_written = 0;
  skipped.outcome = DomainOutcome::kSkipped;
  const std::string want =
      "domain    level  read  written  seconds  status\n"
      "fleet-a   full   100   120      1.50     ok\n"
      "fleet-bb  -      0     0        0.01     FAILED: /srv/x/fleet-bb is in use by another run\n"
      "c         inc    0     0        1.50     skipped\n"
      "3 domain(s) in 2.25 s: 1 ok, 1 skipped, 1 FAILED\n";
  EXPECT_EQ(FormatFleetSummary({Ok("fleet-a"), failed, skipped}, 2.25), want);
}

}  // namespace
}  // namespace backupfs
