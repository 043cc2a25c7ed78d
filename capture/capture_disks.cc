#include "capture/capture_disks.h"

#include <algorithm>
#include <optional>
#include <system_error>
#include <thread>

#include "capture/saveset_files.h"

namespace backupfs {

namespace {

// The failure to report: the first disk that failed for a reason of its own, not one that
// stopped (Cancelled) because another failed.
const Status* FirstFailure(const std::vector<std::optional<Result<CapturedDisk>>>& results,
                           size_t* index) {
  const Status* first = nullptr;
  for (size_t i = 0; i < results.size(); i++) {
    const Status& s = results[i]->status();
    if (s.ok()) continue;
    if (first == nullptr || first->code() == StatusCode::kCancelled) {
      first = &s;
      *index = i;
    }
  }
  return first;
}

}  // namespace

Result<std::vector<CapturedDisk>> CaptureDisks(const std::vector<DiskWork>& work, unsigned workers,
                                               const std::function<bool()>& cancelled,
                                               bool progress_bar, const std::string& what,
                                               RunLog& log) {
  ProgressBoard progress(log, progress_bar);
  const size_t n = work.size();
  std::vector<std::optional<Result<CapturedDisk>>> results(n);
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  const auto stop = [&] { return failed.load() || (cancelled && cancelled()); };
  auto worker = [&] {
    for (size_t i; (i = next.fetch_add(1)) < n;) {
      const DiskWork& w = work[i];
      // An exception must not end the thread (std::terminate: the job would never be aborted).
      try {
        results[i] = CaptureDisk(w.disk, w.source, w.target, progress, stop, log);
      } catch (const std::exception& e) {
        results[i] = Status::IOError(std::string("unexpected error: ") + e.what());
      }
      if (!results[i]->ok()) failed = true;
    }
  };
  const size_t threads = std::min<size_t>(n, workers == 0 ? n : workers);
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; t++) {
    try {
      pool.emplace_back(worker);
    } catch (const std::system_error& e) {  // no more threads (systemd's TasksMax, say)
      log.Warn(std::string("reading disks on fewer threads: ") + e.what());
      break;
    }
  }
  worker();
  for (std::thread& t : pool) t.join();
  size_t index = 0;
  if (const Status* first = FirstFailure(results, &index)) {
    return first->WithPrefix(what + " disk " + work[index].disk.target);
  }
  std::vector<CapturedDisk> out;
  for (auto& r : results) out.push_back(std::move(*r).value());
  return out;
}

Status FinishDisks(std::vector<CapturedDisk>& captured, Storage& saveset, const std::string& what,
                   const StreamWriter::CommitCheck& may_commit) {
  bool refused = false;
  const StreamWriter::CommitCheck check = [&]() {
    Status s = may_commit ? may_commit() : Status::Ok();
    refused = !s.ok();
    return s;
  };
  for (size_t i = 0; i < captured.size(); i++) {
    Status s = captured[i].Finish(check);
    if (s.ok()) continue;
    // Disk i too: its sidecars are stored before its data file's commit, where a store's
    // upload errors come out, and a commit whose answer was lost may have happened after all.
    // Refused, disk i stored no sidecars and was abandoned unseen.
    for (size_t j = 0; j <= i && !refused; j++) RemoveDataFile(saveset, captured[j].summary.file);
    return s.WithPrefix(what + " disk " + captured[i].summary.disk);
  }
  return Status::Ok();
}

}  // namespace backupfs
