// backupfs-capture: backups of libvirt domains over NBD, with virtnbdbackup's option names.
// Parses arguments, installs the signal handling and maps results to exit codes; the work is
// in capture/.
#include <pthread.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "capture/backup.h"
#include "capture/fleet.h"
#include "capture/saveset_log.h"
#include "common/command_line.h"
#include "common/remote.h"
#include "common/run_log.h"
#include "common/signal_watcher.h"
#include "storage/open_storage.h"
#include "tools/store_options.h"

namespace {

// Documented in backupfs-capture(1), as virtnbdbackup's.
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitWarnings = 2;     // only with --strict
constexpr int kDefaultLz4Level = 2;  // virtnbdbackup's -z without a level

constexpr unsigned kDefaultParallelDomains = 2;

struct Args {
  std::vector<std::string> domains;  // -d, repeatable, each a name, a comma list or patterns
  bool all = false;
  unsigned parallel = kDefaultParallelDomains;
  std::string level = "copy";  // virtnbdbackup's default
  std::string type = "stream";
  std::string output;
  std::string compress;  // -z's optional level
  std::string include, exclude, freeze;
  std::string checkpoint_dir, scratch_dir = "/var/tmp", socket_file;
  std::string start_domain;  // -S: a flag; a value is virtnbdbackup 1.x's -S SCRATCHDIR
  unsigned workers = 0;
  uint64_t threshold = 0;
  bool raw = false, pause = false, noprogress = false, strict = false, syslog = false;
  bool qemu = false, printonly = false, killonly = false, startonly = false, verbose = false;
  // Another host: virtnbdbackup's options, and --nbd-connect.
  backupfs::RemoteArgs remote{.uri = "qemu:///system"};
  backupfs::StoreOptions store;  // -o s3://bucket/prefix
};

backupfs::CaptureLevel ParseLevel(const std::string& level) {
  using backupfs::CaptureLevel;
  if (level == "copy") return CaptureLevel::kCopy;
  if (level == "inc") return CaptureLevel::kInc;
  if (level == "diff") return CaptureLevel::kDiff;
  if (level == "auto") return CaptureLevel::kAuto;
  return CaptureLevel::kFull;
}

// "copy", "full, checkpoint virtnbdbackup.0", "diff, changes since virtnbdbackup.1".
std::string What(const backupfs::BackupSummary& s) {
  std::string what = backupfs::CaptureLevelName(s.level);
  switch (s.level) {
    case backupfs::CaptureLevel::kCopy:
      return what + ", no checkpoint";
    case backupfs::CaptureLevel::kDiff:
      return what + ", changes since " + s.parent + ", no checkpoint";
    default:
      return what + ", checkpoint " + s.checkpoint;
  }
}

// The one-line summary (stdout, for cron mail and scripts).
void PrintSummary(const backupfs::BackupSummary& s, double seconds) {
  uint64_t read = 0, written = 0;
  for (const auto& d : s.disks) {
    read += d.data_bytes;
    written += d.file_bytes;
  }
  std::printf("%s: %zu disk(s), %llu bytes read, %llu written in %.2f s (%.1f MiB/s)\n",
              What(s).c_str(), s.disks.size(), static_cast<unsigned long long>(read),
              static_cast<unsigned long long>(written), seconds,
              seconds > 0 ? static_cast<double>(read) / (1 << 20) / seconds : 0.0);
}

// -d's values, each of which may be a comma list.
std::vector<std::string> DomainNames(const Args& a) {
  std::vector<std::string> names;
  for (const std::string& d : a.domains) {
    for (std::string& name : backupfs::SplitList(d)) names.push_back(std::move(name));
  }
  return names;
}

// Several domains, each into OUTPUT/<domain>, with a summary table; one plain -d NAME runs as
// it always did (the saveset is OUTPUT itself).
bool FleetMode(const Args& a) {
  const auto names = DomainNames(a);
  return a.all || names.size() > 1 || (names.size() == 1 && backupfs::IsDomainPattern(names[0]));
}

// The remote options from the arguments; for another host, completed from the URI.
std::optional<std::string> BuildRemote(const Args& a, backupfs::RemoteOptions& r) {
  auto parsed = backupfs::RemoteFromArgs(a.remote);
  if (!parsed.ok()) return parsed.status().message();
  r = std::move(parsed).value();
  return std::nullopt;
}

void AddOptions(CLI::App& app, Args& a, CLI::Option*& z, CLI::Option*& start) {
  auto* general = "General options";
  app.add_option("-d,--domain", a.domains,
                 "domain to back up; several (each into OUTPUT/<domain>): repeat -d, or give a "
                 "comma list or shell patterns ('web*')")
      ->allow_extra_args(false)
      ->group(general);
  app.add_flag("--all", a.all, "back up every domain of the host, each into OUTPUT/<domain>")
      ->group(general);
  app.add_option("--parallel", a.parallel,
                 "with several domains: how many are backed up at once (default 2)")
      ->check(CLI::Range(1, 64))
      ->group(general);
  app.add_option("-l,--level", a.level, "backup level (default: copy)")
      ->check(CLI::IsMember({"copy", "full", "inc", "diff", "auto"}))
      ->group(general);
  app.add_option("-t,--type", a.type, "output type: stream, or raw images for copy/full")
      ->check(CLI::IsMember({"stream", "raw"}))
      ->group(general);
  app.add_flag("-r,--raw", a.raw, "also back up raw, block and network disks (copy/full)")
      ->group(general);
  app.add_option("-o,--output", a.output,
                 "the saveset: a directory, or s3://bucket/prefix; not with -k")
      ->group(general);
  app.add_option("-C,--checkpointdir", a.checkpoint_dir,
                 "where checkpoint XML is kept, a directory or s3:// address "
                 "(default: OUTPUT/checkpoints)")
      ->group(general);
  app.add_option("--scratchdir", a.scratch_dir,
                 "directory for the job's scratch files (default: /var/tmp)")
      ->group(general);
  start = app.add_option("-S,--start-domain", a.start_domain,
                         "start a shut-off domain paused for the backup, destroy it afterwards")
              ->expected(0, 1)
              ->group(general);
  app.add_flag("--pause", a.pause, "suspend the domain until its disks are read")->group(general);
  app.add_option("-i,--include", a.include, "back up only these disks (vda,vdb)")->group(general);
  app.add_option("-x,--exclude", a.exclude, "do not back up these disks (vda,vdb)")->group(general);
  app.add_option("-f,--socketfile", a.socket_file, "the NBD socket (default: a fresh directory)")
      ->group(general);
  app.add_flag("-n,--noprogress", a.noprogress, "no progress bar")->group(general);
  z = app.add_option("-z,--compress", a.compress, "lz4 compression, optional level (default 2)")
          ->expected(0, 1)
          ->check(CLI::Range(0, 12))
          ->group(general);
  app.add_option("-w,--worker", a.workers, "disks backed up in parallel (default: all)")
      ->check(CLI::Range(1, 64))
      ->group(general);
  app.add_option("-F,--freeze-mountpoint", a.freeze,
                 "freeze only these guest mountpoints (default: all)")
      ->group(general);
  app.add_flag("-e,--strict", a.strict, "exit 2 when the run logged warnings")->group(general);
  app.add_option("-T,--threshold", a.threshold,
                 "inc/diff: back up only when this many bytes changed")
      ->group(general);

  auto* remote = "Remote backup options";
  app.add_option("-U,--uri", a.remote.uri, "libvirt connection URI (default: qemu:///system)")
      ->group(remote);
  app.add_option("--user", a.remote.user, "libvirt user (SASL authentication)")->group(remote);
  app.add_option("--password", a.remote.password, "libvirt password (never logged)")->group(remote);
  app.add_option("--ssh-user", a.remote.ssh_user,
                 "ssh user on the remote host (default: from the URI)")
      ->group(remote);
  app.add_option("--ssh-port", a.remote.ssh_port, "ssh port of the remote host (default 22)")
      ->check(CLI::Range(1, 65535))
      ->group(remote);
  app.add_option("--ssh-private-key", a.remote.ssh_private_key,
                 "ssh private key (default: the URI's keyfile, ~/.ssh/id_*, the agent)")
      ->group(remote);
  app.add_option("-P,--nbd-port", a.remote.nbd_port, "port of the NBD export (default 10809)")
      ->check(CLI::Range(1, 65535))
      ->group(remote);
  app.add_option("-I,--nbd-ip", a.remote.nbd_ip,
                 "address the NBD export listens on (default: the URI's)")
      ->group(remote);
  app.add_option("--nbd-connect", a.remote.nbd_connect,
                 "HOST[:PORT]: connect to the export there (a proxy, port forward or NAT)")
      ->group(remote);
  app.add_flag("--tls", a.remote.tls, "NBD over TLS, with libvirt's and QEMU's x509 setup")
      ->group(remote);
  app.add_option(
         "--tls-cert", a.remote.tls_cert,
         "directory of ca-cert.pem, client-cert.pem, client-key.pem (default /etc/pki/qemu)")
      ->group(remote);

  backupfs::AddStoreOptions(app, a.store, "S3 options");

  auto* logging = "Logging options";
  app.add_flag("-L,--syslog", a.syslog, "also log to syslog")->group(logging);
  app.add_flag("-v,--verbose", a.verbose, "debug lines on stderr too")->group(logging);

  auto* debug = "Debug options";
  app.add_flag("-q,--qemu", a.qemu, "extents from qemu-img map instead of NBD block status")
      ->group(debug);
  app.add_flag("-s,--startonly", a.startonly, "refused: jobs are never left running")->group(debug);
  app.add_flag("-k,--killonly", a.killonly, "abort the domain's running backup job and stop")
      ->group(debug);
  app.add_flag("-p,--printonly", a.printonly, "print what would be backed up, write nothing")
      ->group(debug);
  app.set_version_flag("-V,--version", "backupfs-capture " BACKUPFS_VERSION);
}

// Fills the options from the arguments; a message when they are invalid together.
std::optional<std::string> BuildOptions(const Args& a, const CLI::Option* z,
                                        const CLI::Option* start, backupfs::BackupOptions& o,
                                        backupfs::RunLog& log) {
  if (DomainNames(a).empty() && !a.all) return "-d/--domain or --all is required";
  if (FleetMode(a) && !a.socket_file.empty()) {
    return "-f/--socketfile names one socket: not with several domains (each makes its own)";
  }
  if (a.output.empty() && !a.killonly) return "-o/--output is required";
  if (a.output == "-") return "-o -: zip archives on stdout are not supported; name a directory";
  if (a.startonly) return "-s/--startonly is not supported: a job is never left running";
  if (auto error = BuildRemote(a, o.remote)) return error;
  if (!FleetMode(a)) o.domain = DomainNames(a).front();
  o.level = ParseLevel(a.level);
  o.type = a.type == "raw" ? backupfs::OutputType::kRaw : backupfs::OutputType::kStream;
  if (o.type == backupfs::OutputType::kRaw && o.level != backupfs::CaptureLevel::kCopy &&
      o.level != backupfs::CaptureLevel::kFull) {
    return "-t raw is for -l copy and -l full only (incremental data needs the stream format)";
  }
  if (z->count() > 0) o.lz4_level = a.compress.empty() ? kDefaultLz4Level : std::stoi(a.compress);
  if (o.lz4_level && o.type == backupfs::OutputType::kRaw) return "-z needs -t stream";
  o.include = backupfs::SplitList(a.include);
  o.exclude = backupfs::SplitList(a.exclude);
  o.include_raw = a.raw;
  o.scratch_dir = a.scratch_dir;
  o.socket_file = a.socket_file;
  o.start_domain = start->count() > 0;
  if (!a.start_domain.empty()) {
    // virtnbdbackup 1.x spelled --scratchdir as -S: keep such cron lines working.
    o.start_domain = false;
    o.scratch_dir = a.start_domain;
    log.Warn("-S " + a.start_domain +
             ": taken as --scratchdir (virtnbdbackup 1.x); -S alone "
             "starts a shut-off domain");
  }
  o.pause = a.pause;
  o.freeze_mountpoints = backupfs::SplitList(a.freeze);
  o.workers = a.workers;
  if (a.threshold > 0) o.threshold = a.threshold;
  o.qemu_extents = a.qemu;
  o.print_only = a.printonly;
  o.kill_only = a.killonly;
  o.progress = !a.noprogress && isatty(STDERR_FILENO);
  return std::nullopt;
}

// Caught so that the stack unwinds: the run's destructors abort the libvirt job and remove
// the .partial files, which an uncaught exception would skip.
backupfs::Result<backupfs::BackupSummary> RunCatchingExceptions(
    const backupfs::BackupOptions& options) {
  try {
    return backupfs::RunBackup(options);
  } catch (const std::exception& e) {
    return backupfs::Status::IOError(std::string("unexpected error: ") + e.what());
  }
}

// The value of --password on the command line ("" when none), so that a parse error that
// quotes it (an argument taken for another option's value, ...) can be printed without it.
std::string PasswordArgument(int argc, char** argv) {
  std::string password;
  for (int i = 1; i < argc; i++) {
    const std::string arg = argv[i];
    if (arg == "--password" && i + 1 < argc) password = argv[i + 1];
    if (arg.starts_with("--password=")) password = arg.substr(std::string("--password=").size());
  }
  return password;
}

std::string Redacted(std::string text, const std::string& secret) {
  if (secret.empty()) return text;
  for (size_t at = text.find(secret); at != std::string::npos; at = text.find(secret, at)) {
    text.replace(at, secret.size(), "<password>");
  }
  return text;
}

// Parses argv; the exit code when the program must stop (--help, --version, a bad option).
std::optional<int> Parse(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::ostringstream out, err;
    const int rc = app.exit(e, out, err);
    const std::string password = PasswordArgument(argc, argv);
    std::cout << Redacted(out.str(), password);
    std::cerr << Redacted(err.str(), password);
    return rc == 0 ? kExitOk : kExitFailure;
  }
  return std::nullopt;
}

// The domains of -d/--all on the host, each into OUTPUT/<domain>, `a.parallel` at a time;
// the summary table on stdout.
int RunFleetMode(const Args& a, const backupfs::BackupOptions& base, backupfs::RunLog& log,
                 backupfs::SignalWatcher& signals) {
  const std::string& host = base.remote.uri;
  auto available = backupfs::ListHostDomains(base.remote);
  if (!available.ok()) {
    log.Error(available.status().message());
    return kExitFailure;
  }
  if (a.all && available->empty()) {
    log.Error("--all: " + host + " has no domain to back up");
    return kExitFailure;
  }
  const auto selection = backupfs::SelectDomains(DomainNames(a), a.all, *available);
  std::vector<backupfs::DomainResult> unmatched;
  for (const std::string& pattern : selection.unmatched) {
    backupfs::DomainResult r;
    r.domain = pattern;
    r.error = "matches no domain of " + host;
    log.Error("-d " + pattern + ": " + r.error + " (virsh -c " + host + " list --all lists them)");
    unmatched.push_back(std::move(r));
  }
  std::string names;
  for (const std::string& d : selection.domains) names += (names.empty() ? "" : ", ") + d;
  if (!selection.domains.empty()) {
    log.Info("backing up " + std::to_string(selection.domains.size()) + " domain(s) of " + host +
             ", " + std::to_string(a.parallel) + " at a time, each into " + a.output +
             "/<domain>: " + names);
  }
  const auto begin = std::chrono::steady_clock::now();
  auto results = backupfs::RunFleet(
      selection.domains, a.parallel, signals.flag(), [&](const std::string& domain) {
        return backupfs::BackupOneDomain(base, domain, a.verbose, a.syslog);
      });
  const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - begin;
  results.insert(results.end(), unmatched.begin(), unmatched.end());
  if (signals.signal() != 0) {
    log.Error("interrupted by signal " + std::to_string(signals.signal()) +
              ": the running backups were aborted, no further domain was started");
  }
  std::fputs(backupfs::FormatFleetSummary(results, elapsed.count()).c_str(), stdout);
  unsigned warnings = log.warnings();
  for (const auto& r : results) {
    if (r.outcome == backupfs::DomainOutcome::kFailed) return kExitFailure;
    warnings += r.warnings;
  }
  if (a.strict && warnings > 0) {
    log.Info(std::to_string(warnings) + " warning(s) and --strict: exit code 2");
    return kExitWarnings;
  }
  return kExitOk;
}

// The saveset (-o) and -C's storage: a directory, or an s3:// address. Nothing is contacted
// yet. A message when an address is not valid.
std::optional<std::string> OpenStores(const Args& a, std::unique_ptr<backupfs::Storage>& saveset,
                                      std::unique_ptr<backupfs::Storage>& checkpoints) {
  const auto open = [&a](const std::string& address,
                         std::unique_ptr<backupfs::Storage>& store) -> std::optional<std::string> {
    if (address.empty()) return std::nullopt;
    auto opened = backupfs::OpenStorage(address, a.store);
    if (!opened.ok()) return opened.status().message();
    store = std::move(opened).value();
    return std::nullopt;
  };
  if (auto error = open(a.output, saveset)) return error;
  return open(a.checkpoint_dir, checkpoints);
}

// One domain into the saveset itself; the exit code.
int RunOneDomain(const backupfs::BackupOptions& options, backupfs::RunLog& log,
                 backupfs::SignalWatcher& signals) {
  const auto begin = std::chrono::steady_clock::now();
  auto summary = RunCatchingExceptions(options);
  if (!summary.ok()) {
    if (signals.signal() != 0) {
      log.Error("interrupted by signal " + std::to_string(signals.signal()) +
                ": the backup job was aborted, nothing of this run was kept");
    }
    log.Error(summary.status().message());
    return kExitFailure;
  }
  const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - begin;
  if (!summary->skipped) PrintSummary(*summary, elapsed.count());
  return kExitOk;
}

// The run's log into the saveset (a store's is uploaded now, after its last line), then
// --strict's exit code 2 when the run logged warnings.
int Finish(int rc, const Args& args, backupfs::SavesetLog& log_file, backupfs::RunLog& log) {
  if (rc == kExitOk && args.strict && log.warnings() > 0) {
    log.Info(std::to_string(log.warnings()) + " warning(s) and --strict: exit code 2");
    rc = kExitWarnings;
  }
  backupfs::Status stored = log_file.Upload();
  if (!stored.ok()) {
    log.Warn(stored.message());
    if (rc == kExitOk && args.strict) rc = kExitWarnings;
  }
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  backupfs::SignalWatcher::BlockWakeup();
  CLI::App app{
      "backupfs-capture: copy, full, incremental and differential backups of libvirt domains"};
  Args args;
  CLI::Option* z = nullptr;
  CLI::Option* start = nullptr;
  AddOptions(app, args, z, start);
  if (auto rc = Parse(app, argc, argv)) return *rc;

  backupfs::RunLog log(args.verbose, args.syslog);
  backupfs::BackupOptions options;
  std::unique_ptr<backupfs::Storage> saveset, checkpoints;
  std::optional<std::string> error = BuildOptions(args, z, start, options, log);
  if (!error) error = OpenStores(args, saveset, checkpoints);
  if (error) {
    std::fprintf(stderr, "backupfs-capture: %s\n", Redacted(*error, args.remote.password).c_str());
    return kExitFailure;
  }
  backupfs::SignalWatcher signals;
  options.saveset = saveset.get();
  options.checkpoints = checkpoints.get();
  options.cancel = signals.flag();
  options.log = &log;
  options.version = BACKUPFS_VERSION;
  if (FleetMode(args)) return RunFleetMode(args, options, log, signals);
  backupfs::SavesetLog log_file(log);
  options.log_file = &log_file;
  return Finish(RunOneDomain(options, log, signals), args, log_file, log);
}
