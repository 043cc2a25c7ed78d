// Backups of many domains in one run (a fleet): which domains `-d` patterns and `--all` select
// on a host, one backup per domain with bounded parallelism, and the summary table.
//
// The selection, the scheduling and the table are libvirt-free and take the work as a
// function (DomainRunner), so that they are unit-tested without a hypervisor; ListHostDomains
// and BackupOneDomain are the libvirt side that backupfs-capture plugs in.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "capture/backup.h"
#include "stream/status.h"

namespace backupfs {

// Whether `name` holds a shell wildcard (*, ? or [), i.e. is matched with fnmatch(3) rather
// than taken as one domain's name.
bool IsDomainPattern(const std::string& name);

struct DomainSelection {
  std::vector<std::string> domains;    // sorted, each once
  std::vector<std::string> unmatched;  // patterns (or names) that selected nothing, as given
};

// The domains of `available` that `patterns` select (fnmatch, no flags: a plain name selects
// only itself); every one of them with `all`.
DomainSelection SelectDomains(const std::vector<std::string>& patterns, bool all,
                              const std::vector<std::string>& available);

enum class DomainOutcome { kOk, kSkipped, kFailed };

// How one domain's backup went, for the summary table and the exit code.
struct DomainResult {
  std::string domain;
  std::string level = "-";  // the level that ran ("full", "inc", ...); "-" when none did
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
  double seconds = 0;
  DomainOutcome outcome = DomainOutcome::kFailed;
  std::string error;      // kFailed: one line saying why
  unsigned warnings = 0;  // logged by the domain's run (for --strict)
};

// "ok", "skipped" or "FAILED: <error>".
std::string OutcomeText(const DomainResult& r);

// Does one domain's backup. Called from several threads at once, one call per domain.
using DomainRunner = std::function<DomainResult(const std::string& domain)>;

// Calls `run` for each of `domains`, at most `parallel` (0 taken as 1) at a time, starting
// them in the order given. A failed domain does not stop the others; once `cancel` (may be
// null) is set no further domain starts, and those get kFailed "not started: interrupted". An
// exception thrown by `run` becomes that domain's kFailed. Returns one result per domain, in
// the order of `domains`.
std::vector<DomainResult> RunFleet(const std::vector<std::string>& domains, unsigned parallel,
                                   const std::atomic<bool>* cancel, const DomainRunner& run);

// The summary printed at the end of a fleet run: a header, one row per domain (domain, level,
// bytes read, bytes written, seconds, status), then a line of totals with the wall time:
//   domain   level  read      written   seconds  status
//   fleet-a  full   67108864  67239936  1.52     ok
//   fleet-b  -      0         0         0.01     FAILED: <why>
//   2 domain(s) in 1.60 s: 1 ok, 0 skipped, 1 FAILED
std::string FormatFleetSummary(const std::vector<DomainResult>& results, double wall_seconds);

// The names of all domains of the host at remote.uri, running or shut off, sorted. With
// remote.libvirt_user/libvirt_password set they answer libvirt's authentication (SASL)
// prompts; the password appears in no message.
Result<std::vector<std::string>> ListHostDomains(const RemoteOptions& remote);

// One domain of a fleet: RunBackup with `base` for `domain`, into the subdirectory `<domain>` of
// base.saveset (and of base.checkpoints when set), with no progress bar and a RunLog of its own
// (its file in that saveset, stderr lines prefixed "[<domain>] "). base.log and base.log_file
// are not used. The run's error, if any, is logged there too.
DomainResult BackupOneDomain(const BackupOptions& base, const std::string& domain, bool verbose,
                             bool syslog);

}  // namespace backupfs
