#include "common/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>

namespace backupfs {

std::string FormatMib(uint64_t bytes) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return buf;
}

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kRedraw = std::chrono::milliseconds(200);
constexpr auto kLogEvery = std::chrono::seconds(30);

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

ProgressBoard::ProgressBoard(RunLog& log, bool bar) : log_(log), bar_(bar) {
  log_.SetBarActive(bar_);
  thread_ = std::thread([this] { Loop(); });
}

ProgressBoard::~ProgressBoard() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  if (bar_ && !disks_.empty()) Draw(true);  // the final state, even of a short run
  log_.SetBarActive(false);
}

ProgressBoard::Disk& ProgressBoard::Start(const std::string& name, uint64_t total) {
  std::lock_guard<std::mutex> lock(mu_);
  disks_.push_back(std::unique_ptr<Disk>(new Disk(name, total)));
  return *disks_.back();
}

void ProgressBoard::Finish(Disk& disk) {
  disk.finished_ = true;
  const double s = Seconds(Clock::now() - disk.start_);
  const uint64_t done = disk.done_.load();
  char rate[64];
  snprintf(rate, sizeof rate, "%.2f s, %.1f MiB/s", s,
           s > 0 ? static_cast<double>(done) / (1 << 20) / s : 0.0);
  log_.Info("disk " + disk.name_ + ": " + FormatMib(done) + " read in " + rate);
}

std::string ProgressBoard::Line(const Disk& d, Clock::time_point now) const {
  const uint64_t done = d.done_.load(std::memory_order_relaxed);
  const double s = Seconds(now - d.start_);
  const double rate = s > 0 ? static_cast<double>(done) / s : 0;
  const unsigned pct = d.total_ ? static_cast<unsigned>(done * 100 / d.total_) : 100;
  char buf[160];
  if (d.finished_ || rate <= 0 || done >= d.total_) {
    snprintf(buf, sizeof buf, "%s %3u%% %s", d.name_.c_str(), pct, FormatMib(done).c_str());
  } else {
    const double eta = static_cast<double>(d.total_ - done) / rate;
    snprintf(buf, sizeof buf, "%s %3u%% %s of %s, %.1f MiB/s, ETA %.0f s", d.name_.c_str(), pct,
             FormatMib(done).c_str(), FormatMib(d.total_).c_str(), rate / (1 << 20), eta);
  }
  return buf;
}

// One status line for every disk, redrawn in place.
void ProgressBoard::Draw(bool final_draw) {
  std::string line;
  const Clock::time_point now = Clock::now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    // By name, not by start: disks read in parallel start in any order.
    std::vector<const Disk*> order;
    for (const auto& d : disks_) order.push_back(d.get());
    std::sort(order.begin(), order.end(),
              [](const Disk* a, const Disk* b) { return a->name_ < b->name_; });
    for (const Disk* d : order) line += (line.empty() ? "" : " | ") + Line(*d, now);
  }
  const size_t width = line.size();
  if (width < drawn_width_) line.append(drawn_width_ - width, ' ');
  drawn_width_ = width;
  line = "\r" + line + (final_draw ? "\n" : "");
  if (write(STDERR_FILENO, line.data(), line.size()) < 0) {
    // A closed terminal only loses the bar.
  }
}

void ProgressBoard::Loop() {
  Clock::time_point last_log = Clock::now();
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, kRedraw, [this] { return stop_; })) {
    if (bar_) {
      lock.unlock();
      Draw(false);
      lock.lock();
      continue;
    }
    if (Clock::now() - last_log < kLogEvery) continue;
    last_log = Clock::now();
    std::vector<std::string> lines;
    for (const auto& d : disks_) {
      if (!d->finished_) lines.push_back(Line(*d, last_log));
    }
    lock.unlock();
    for (const std::string& l : lines) log_.Info("progress: " + l);
    lock.lock();
  }
}

}  // namespace backupfs
