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
#include <optional>
#include <string>
#include <thread>

#include "capture/backup.h"
#include "common/command_line.h"
#include "common/run_log.h"
#include "common/signal_watcher.h"

namespace {

// Documented in backupfs-capture(1), as virtnbdbackup's.
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitWarnings = 2;     // only with --strict
constexpr int kDefaultLz4Level = 2;  // virtnbdbackup's -z without a level

struct Args {
  std::string domain;
  std::string level = "copy";  // virtnbdbackup's default
  std::string type = "stream";
  std::string output;
  std::string uri = "qemu:///system";
  std::string compress;  // -z's optional level
  std::string include, exclude, freeze;
  std::string checkpoint_dir, scratch_dir = "/var/tmp", socket_file;
  std::string start_domain;  // -S: a flag; a value is virtnbdbackup 1.x's -S SCRATCHDIR
  unsigned workers = 0;
  uint64_t threshold = 0;
  bool raw = false, pause = false, noprogress = false, strict = false, syslog = false;
  bool qemu = false, printonly = false, killonly = false, startonly = false, verbose = false;
  // Remote backups: parsed so that a virtnbdbackup command line gets a clear refusal.
  std::string user, ssh_user, password, nbd_ip, tls_cert;
  unsigned nbd_port = 0;
  bool tls = false;
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

// Remote backups need ssh and TCP/TLS NBD: not built yet, refused before anything happens.
std::optional<std::string> RemoteRefusal(const Args& a) {
  if (backupfs::IsRemoteUri(a.uri)) return "-U " + a.uri + " names a remote host";
  if (!a.user.empty()) return "--user";
  if (!a.ssh_user.empty()) return "--ssh-user";
  if (!a.password.empty()) return "--password";
  if (a.nbd_port != 0) return "-P/--nbd-port";
  if (!a.nbd_ip.empty()) return "-I/--nbd-ip";
  if (a.tls || !a.tls_cert.empty()) return "--tls";
  return std::nullopt;
}

void AddOptions(CLI::App& app, Args& a, CLI::Option*& z, CLI::Option*& start) {
  auto* general = "General options";
  app.add_option("-d,--domain", a.domain, "domain to back up")->required()->group(general);
  app.add_option("-l,--level", a.level, "backup level (default: copy)")
      ->check(CLI::IsMember({"copy", "full", "inc", "diff", "auto"}))
      ->group(general);
  app.add_option("-t,--type", a.type, "output type: stream, or raw images for copy/full")
      ->check(CLI::IsMember({"stream", "raw"}))
      ->group(general);
  app.add_flag("-r,--raw", a.raw, "also back up raw, block and network disks (copy/full)")
      ->group(general);
  app.add_option("-o,--output", a.output, "output directory (the saveset); not with -k")
      ->group(general);
  app.add_option("-C,--checkpointdir", a.checkpoint_dir,
                 "where checkpoint XML is kept (default: OUTPUT/checkpoints)")
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

  auto* remote = "Remote backup options (not supported yet: refused)";
  app.add_option("-U,--uri", a.uri, "libvirt connection URI (default: qemu:///system)")
      ->group(remote);
  app.add_option("--user", a.user, "libvirt user")->group(remote);
  app.add_option("--ssh-user", a.ssh_user, "ssh user for remote copies")->group(remote);
  app.add_option("--password", a.password, "libvirt password")->group(remote);
  app.add_option("-P,--nbd-port", a.nbd_port, "remote NBD port")->group(remote);
  app.add_option("-I,--nbd-ip", a.nbd_ip, "remote NBD address")->group(remote);
  app.add_flag("--tls", a.tls, "TLS for NBD")->group(remote);
  app.add_option("--tls-cert", a.tls_cert, "TLS certificate directory")->group(remote);

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
  if (auto what = RemoteRefusal(a)) {
    return *what + ": remote backups are not supported yet; run backupfs-capture on the host";
  }
  if (a.output.empty() && !a.killonly) return "-o/--output is required";
  if (a.output == "-") return "-o -: zip archives on stdout are not supported; name a directory";
  if (a.startonly) return "-s/--startonly is not supported: a job is never left running";
  o.remote.uri = a.uri;
  o.domain = a.domain;
  o.output_dir = a.output;
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
  o.checkpoint_dir = a.checkpoint_dir;
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

}  // namespace

int main(int argc, char** argv) {
  backupfs::SignalWatcher::BlockWakeup();
  CLI::App app{
      "backupfs-capture: copy, full, incremental and differential backups of libvirt domains"};
  Args args;
  CLI::Option* z = nullptr;
  CLI::Option* start = nullptr;
  AddOptions(app, args, z, start);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitFailure;
  }

  backupfs::RunLog log(args.verbose, args.syslog);
  backupfs::BackupOptions options;
  if (auto error = BuildOptions(args, z, start, options, log)) {
    std::fprintf(stderr, "backupfs-capture: %s\n", error->c_str());
    return kExitFailure;
  }
  backupfs::SignalWatcher signals;
  options.cancel = signals.flag();
  options.log = &log;
  options.version = BACKUPFS_VERSION;
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
  if (args.strict && log.warnings() > 0) {
    log.Info(std::to_string(log.warnings()) + " warning(s) and --strict: exit code 2");
    return kExitWarnings;
  }
  return kExitOk;
}
