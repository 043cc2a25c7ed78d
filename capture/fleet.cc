#include "capture/fleet.h"

#include <fnmatch.h>
#include <libvirt/libvirt.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <set>
#include <thread>

#include "capture/libvirt.h"
#include "common/run_log.h"

namespace backupfs {

namespace {

// A multi-line message (a libvirt error with its details) shortened to its first line.
std::string FirstLine(const std::string& text) { return text.substr(0, text.find('\n')); }

DomainResult NotStarted(const std::string& domain) {
  DomainResult r;
  r.domain = domain;
  r.error = "not started: interrupted by a signal";
  return r;
}

DomainResult RunCatching(const DomainRunner& run, const std::string& domain) {
  try {
    return run(domain);
  } catch (const std::exception& e) {
    DomainResult r;
    r.domain = domain;
    r.error = FirstLine(std::string("unexpected error: ") + e.what());
    return r;
  }
}

// Pads `text` on the right to `width` (left-aligned columns).
std::string Pad(const std::string& text, size_t width) {
  return text.size() >= width ? text : text + std::string(width - text.size(), ' ');
}

std::string Seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", s);
  return buf;
}

// The table's cells, header first.
std::vector<std::vector<std::string>> TableCells(const std::vector<DomainResult>& results) {
  std::vector<std::vector<std::string>> rows{
      {"domain", "level", "read", "written", "seconds", "status"}};
  for (const DomainResult& r : results) {
    rows.push_back({r.domain, r.level, std::to_string(r.bytes_read),
                    std::to_string(r.bytes_written), Seconds(r.seconds), OutcomeText(r)});
  }
  return rows;
}

// The domain's log into its saveset (a store's is uploaded now); a failure is a warning.
void StoreLog(SavesetLog& file, RunLog& log) {
  Status s = file.Upload();
  if (!s.ok()) log.Warn(s.message());
}

}  // namespace

bool IsDomainPattern(const std::string& name) {
  return name.find_first_of("*?[") != std::string::npos;
}

DomainSelection SelectDomains(const std::vector<std::string>& patterns, bool all,
                              const std::vector<std::string>& available) {
  std::set<std::string> chosen;
  DomainSelection selection;
  if (all) chosen.insert(available.begin(), available.end());
  for (const std::string& pattern : patterns) {
    bool matched = false;
    for (const std::string& name : available) {
      if (fnmatch(pattern.c_str(), name.c_str(), 0) == 0) {
        chosen.insert(name);
        matched = true;
      }
    }
    if (!matched) selection.unmatched.push_back(pattern);
  }
  selection.domains.assign(chosen.begin(), chosen.end());
  return selection;
}

std::string OutcomeText(const DomainResult& r) {
  switch (r.outcome) {
    case DomainOutcome::kOk:
      return "ok";
    case DomainOutcome::kSkipped:
      return "skipped";
    case DomainOutcome::kFailed:
      break;
  }
  return "FAILED: " + r.error;
}

std::vector<DomainResult> RunFleet(const std::vector<std::string>& domains, unsigned parallel,
                                   const std::atomic<bool>* cancel, const DomainRunner& run) {
  std::vector<DomainResult> results(domains.size());
  // Each worker takes the next index; each result slot is written by the one worker that
  // took its index, and read after the join: no lock needed.
  std::atomic<size_t> next{0};
  const auto worker = [&] {
    for (size_t i = next++; i < domains.size(); i = next++) {
      const bool stop = cancel != nullptr && cancel->load();
      results[i] = stop ? NotStarted(domains[i]) : RunCatching(run, domains[i]);
      results[i].domain = domains[i];
    }
  };
  const size_t threads = std::min<size_t>(std::max(parallel, 1u), domains.size());
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; t++) pool.emplace_back(worker);
  worker();  // this thread is one of them
  for (std::thread& t : pool) t.join();
  return results;
}

std::string FormatFleetSummary(const std::vector<DomainResult>& results, double wall_seconds) {
  const auto cells = TableCells(results);
  std::vector<size_t> width(cells[0].size(), 0);
  for (const auto& row : cells) {
    for (size_t c = 0; c < row.size(); c++) width[c] = std::max(width[c], row[c].size());
  }
  std::string out;
  for (const auto& row : cells) {
    std::string line;
    for (size_t c = 0; c + 1 < row.size(); c++) line += Pad(row[c], width[c]) + "  ";
    out += line + row.back() + "\n";
  }
  size_t ok = 0, skipped = 0, failed = 0;
  for (const DomainResult& r : results) {
    ok += r.outcome == DomainOutcome::kOk;
    skipped += r.outcome == DomainOutcome::kSkipped;
    failed += r.outcome == DomainOutcome::kFailed;
  }
  out += std::to_string(results.size()) + " domain(s) in " + Seconds(wall_seconds) +
         " s: " + std::to_string(ok) + " ok, " + std::to_string(skipped) + " skipped, " +
         std::to_string(failed) + " FAILED\n";
  return out;
}

Result<std::vector<std::string>> ListHostDomains(const RemoteOptions& remote) {
  SilenceLibvirtErrors();
  BFS_ASSIGN_OR_RETURN(UniqueConnect conn, ConnectLibvirt(remote));
  virDomainPtr* list = nullptr;
  const int n = virConnectListAllDomains(conn.get(), &list, 0);  // active and inactive
  if (n < 0) {
    return LibvirtError("cannot list the domains of " +
                        (remote.uri.empty() ? std::string(kDefaultLibvirtUri) : remote.uri));
  }
  std::vector<UniqueDomain> owned(list, list + n);
  std::free(list);
  std::vector<std::string> names;
  for (const UniqueDomain& d : owned) names.emplace_back(virDomainGetName(d.get()));
  std::sort(names.begin(), names.end());
  return names;
}

DomainResult BackupOneDomain(const BackupOptions& base, const std::string& domain, bool verbose,
                             bool syslog) {
  RunLog log(verbose, syslog, /*to_stderr=*/true, "backupfs-capture", "[" + domain + "] ");
  BackupOptions o = base;
  o.domain = domain;
  std::unique_ptr<Storage> saveset =
      base.saveset != nullptr ? base.saveset->Sub(domain) : nullptr;  // none for -k
  std::unique_ptr<Storage> checkpoints =
      base.checkpoints != nullptr ? base.checkpoints->Sub(domain) : nullptr;
  o.saveset = saveset.get();
  o.checkpoints = checkpoints.get();
  o.progress = false;  // several bars on one terminal would overwrite each other
  o.log = &log;
  SavesetLog log_file(log);
  o.log_file = &log_file;
  DomainResult r;
  r.domain = domain;
  const auto begin = std::chrono::steady_clock::now();
  Result<BackupSummary> summary = RunBackup(o);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  if (!summary.ok()) {
    if (o.cancel != nullptr && o.cancel->load()) {
      log.Error("interrupted: the backup job was aborted, nothing of this run was kept");
    }
    log.Error(summary.status().message());
    StoreLog(log_file, log);
    r.error = FirstLine(summary.status().message());
    r.warnings = log.warnings();
    return r;
  }
  StoreLog(log_file, log);
  r.level = CaptureLevelName(summary->level);
  for (const DiskSummary& d : summary->disks) {
    r.bytes_read += d.data_bytes;
    r.bytes_written += d.file_bytes;
  }
  r.outcome = summary->skipped ? DomainOutcome::kSkipped : DomainOutcome::kOk;
  r.warnings = log.warnings();
  return r;
}

}  // namespace backupfs
