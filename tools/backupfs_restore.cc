// backupfs-restore: restore, dump and verify savesets, with virtnbdrestore's option names.
// Parses arguments, installs the signal handling and maps results to exit codes; the work is
// in backupfs/ (dump, verify) and restore/.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>

#include "backupfs/dump.h"
#include "backupfs/saveset.h"
#include "backupfs/verify.h"
#include "common/command_line.h"
#include "common/progress.h"
#include "common/remote.h"
#include "common/run_log.h"
#include "common/signal_watcher.h"
#include "restore/consolidate.h"
#include "restore/export.h"
#include "restore/instant.h"
#include "restore/restore.h"
#include "storage/open_storage.h"
#include "stream/file.h"
#include "tools/store_options.h"

namespace {

// Documented in backupfs-restore(1). Usage errors exit 2, as virtnbdrestore's argparse does.
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

struct Args {
  std::string input;
  std::string action = "restore";
  std::string output;
  std::string disk;
  std::string until, sequence, socket_file, config_file = "vmconfig.xml", name, logfile;
  std::string format = "auto";
  std::vector<std::string> devices;
  unsigned workers = 0;
  unsigned long buffsize = 0;
  bool verbose = false, noprogress = false, raw = false, adjust = false, define = false;
  bool preallocate = false, compress = false, force = false, syslog = false, nocolor = false;
  bool qemu_writer = false;
  // Instant recovery, live restore, NBD export.
  std::string migrate_to, nbd_socket, nbd_tcp;
  std::string nbd_serve;  // remote instant recovery
  bool no_start = false, writable = false;
  unsigned bandwidth_mib = 0;
  // Consolidation and retention.
  bool dry_run = false;
  std::optional<unsigned> keep_last, keep_days;
  // Remote restore (virtnbdrestore's options, and --nbd-connect).
  backupfs::RemoteArgs remote;
  // -i s3://BUCKET/PREFIX: how to reach the store.
  backupfs::StoreOptions store;
};

using SavesetPtr = std::shared_ptr<backupfs::Storage>;

class PrintingReporter final : public backupfs::VerifyReporter {
 public:
  explicit PrintingReporter(bool verbose) : verbose_(verbose) {}
  void Problem(const std::string& m) override { std::fprintf(stderr, "ERROR: %s\n", m.c_str()); }
  void Note(const std::string& m) override {
    if (verbose_) std::fprintf(stderr, "note: %s\n", m.c_str());
  }
  void FileOk(const std::string& f, const std::string& d) override {
    std::printf("OK %s (%s)\n", f.c_str(), d.c_str());
    std::fflush(stdout);
  }

 private:
  bool verbose_;
};

int Verify(const Args& args, const backupfs::Storage& saveset) {
  PrintingReporter reporter(args.verbose);
  auto summary = backupfs::VerifySaveset(saveset, args.disk, reporter);
  if (!summary.ok()) {
    std::fprintf(stderr, "backupfs-restore: %s\n", summary.status().message().c_str());
    return kExitFailure;
  }
  std::printf("verified %llu data files, %llu chunks (%llu bytes): %llu problems\n",
              static_cast<unsigned long long>(summary->files),
              static_cast<unsigned long long>(summary->chunks_checked),
              static_cast<unsigned long long>(summary->bytes_checked),
              static_cast<unsigned long long>(summary->problems));
  return summary->problems == 0 ? kExitOk : kExitFailure;
}

int Dump(const Args& args, const backupfs::Storage& saveset) {
  auto listing = backupfs::ListSaveset(saveset, args.disk);
  if (!listing.ok()) {
    std::fprintf(stderr, "backupfs-restore: %s\n", listing.status().message().c_str());
    return kExitFailure;
  }
  int rc = kExitOk;
  auto entries = nlohmann::ordered_json::array();
  for (const auto& f : listing->data_files) {
    auto entry = backupfs::DumpDataFile(saveset, f.file);
    if (!entry.ok()) {
      std::fprintf(stderr, "backupfs-restore: %s\n", entry.status().message().c_str());
      rc = kExitFailure;
      continue;
    }
    entries.push_back(std::move(entry).value());
  }
  if (listing->data_files.empty()) {
    std::fprintf(stderr, "backupfs-restore: %s: no data files\n", args.input.c_str());
    rc = kExitFailure;
  }
  // File names need not be UTF-8: such bytes are shown as U+FFFD rather than failing.
  const std::string text =
      entries.dump(4, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
  if (args.output.empty() || args.output == "dump" || args.output == "-") {
    std::fwrite(text.data(), 1, text.size(), stdout);
    return rc;
  }
  backupfs::Status s = backupfs::WriteFileAtomically(
      args.output, std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  if (!s.ok()) {
    std::fprintf(stderr, "backupfs-restore: %s\n", s.message().c_str());
    return kExitFailure;
  }
  return rc;
}

// The first option that only a run against another host uses (nullopt when none is given).
std::optional<std::string> RemoteOption(const Args& a) {
  std::string what = backupfs::FirstRemoteOnlyOption(a.remote);
  if (what.empty()) return std::nullopt;
  return what;
}

// -U and the remote options as RemoteOptions; a usage message when they do not go together.
std::optional<std::string> BuildRemote(const Args& a, backupfs::RemoteOptions& remote) {
  if (!backupfs::IsRemoteUri(a.remote.uri)) {
    if (auto what = RemoteOption(a)) {
      return *what +
             " goes with a remote -U (qemu+ssh://[USER@]HOST/system): the images "
             "are written on that host";
    }
  }
  auto parsed = backupfs::RemoteFromArgs(a.remote);
  if (!parsed.ok()) return parsed.status().message();
  remote = std::move(parsed).value();
  return std::nullopt;
}

// Fills the options; a usage message when the arguments do not go together.
std::optional<std::string> BuildOptions(const Args& a, SavesetPtr saveset,
                                        backupfs::RestoreOptions& o) {
  if (auto error = BuildRemote(a, o.remote)) return error;
  if (a.output.empty()) return "-o/--output is required: the directory the images go to";
  o.input = a.input;
  o.saveset = std::move(saveset);
  o.output = a.output;
  o.until = a.until;
  o.sequence = backupfs::SplitList(a.sequence);
  o.disk = a.disk;
  o.workers = a.workers;
  o.progress = !a.noprogress;
  o.socket_file = a.socket_file;
  o.raw = a.raw;
  // As virtnbdrestore: -D implies -c, and -s restores one image without config.
  o.define = a.define && o.sequence.empty();
  o.adjust_config = (a.adjust || a.define) && o.sequence.empty();
  o.config_file = a.config_file;
  o.name = a.name;
  o.preallocate = a.preallocate;
  o.compress = a.compress;
  o.qemu_writer = a.qemu_writer;
  o.force = a.force;
  o.uri = a.remote.uri;
  o.format = a.format == "qcow2" ? backupfs::OutputFormat::kQcow2
             : a.format == "raw" ? backupfs::OutputFormat::kRaw
                                 : backupfs::OutputFormat::kAuto;
  if (o.compress && o.format == backupfs::OutputFormat::kRaw) {
    return "--compress writes compressed qcow2 clusters: it cannot go with --format raw";
  }
  if (o.compress && o.preallocate) {
    return "--compress and -A do not go together: compressed clusters cannot be written over "
           "preallocated ones";
  }
  for (const std::string& d : a.devices) {
    const size_t eq = d.find('=');
    if (eq == 0 || eq == std::string::npos || eq + 1 == d.size()) {
      return "--device " + d + ": expected DISK=BLOCKDEVICE (vda=/dev/vg/lv)";
    }
    o.devices[d.substr(0, eq)] = d.substr(eq + 1);
  }
  if (!o.sequence.empty() && (a.adjust || a.define)) {
    std::fprintf(stderr, "backupfs-restore: -s restores data files only: -c and -D are ignored\n");
  }
  return std::nullopt;
}

void PrintSummary(const backupfs::RestoreSummary& s, const std::string& output, double seconds) {
  std::printf(
      "restored %s: %zu image(s) into %s, %llu bytes of data, %llu written in %.2f s "
      "(%.1f MiB/s)%s%s\n",
      s.point.c_str(), s.images.size(), output.c_str(),
      static_cast<unsigned long long>(s.data_bytes),
      static_cast<unsigned long long>(s.written_bytes), seconds,
      seconds > 0 ? static_cast<double>(s.data_bytes) / (1 << 20) / seconds : 0.0,
      s.defined.empty() ? "" : ", defined as domain ", s.defined.c_str());
}

// -L: the log also goes to a file; false (said in the log) when it cannot be opened.
bool OpenLogFile(const Args& args, backupfs::RunLog& log) {
  if (args.logfile.empty()) return true;
  backupfs::Status s = log.OpenFile(args.logfile, /*append=*/true);
  if (!s.ok()) log.Error(s.message());
  return s.ok();
}

int Restore(const Args& args, SavesetPtr saveset) {
  backupfs::RestoreOptions options;
  if (auto error = BuildOptions(args, std::move(saveset), options)) {
    std::fprintf(stderr, "backupfs-restore: %s\n", error->c_str());
    return kExitUsage;
  }
  backupfs::RunLog log(args.verbose, args.syslog, /*to_stderr=*/true, "backupfs-restore");
  if (!OpenLogFile(args, log)) return kExitFailure;
  backupfs::SignalWatcher signals;
  const auto begin = std::chrono::steady_clock::now();
  backupfs::Result<backupfs::RestoreSummary> summary = backupfs::RestoreSummary{};
  try {
    summary = backupfs::RunRestore(options, log, *signals.flag());
  } catch (const std::exception& e) {  // unwinds, so the partial images are removed
    summary = backupfs::Status::IOError(std::string("unexpected error: ") + e.what());
  }
  if (!summary.ok()) {
    if (signals.signal() != 0) {
      log.Error("interrupted by signal " + std::to_string(signals.signal()) +
                ": the partial images were removed");
    }
    log.Error(summary.status().message());
    return kExitFailure;
  }
  const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - begin;
  PrintSummary(*summary, args.output, elapsed.count());
  return kExitOk;
}

// Actions that read or write this machine's saveset only: the remote options have no meaning.
std::optional<std::string> LocalOnlyRefusal(const Args& a) {
  const std::string& act = a.action;
  const bool local_only = act == "dump" || act == "verify" || act == "export" ||
                          (act == "restore" && (a.output == "dump" || a.output == "verify"));
  if (!local_only) return std::nullopt;
  auto what = RemoteOption(a);
  if (!what) return std::nullopt;
  const std::string name = act == "restore" ? a.output : act;
  return *what + ": -a " + name +
         " works on the saveset on this machine; the remote options go "
         "with -a restore";
}

// What each action needs beyond the parser's checks.
std::optional<std::string> CheckActionArgs(const Args& a) {
  const std::string& act = a.action;
  const bool by_name = act == "instant-migrate" || act == "instant-resume" || act == "instant-end";
  if (by_name && a.name.empty()) return "-a " + act + " needs -N NAME, the instant domain";
  if (act == "instant-migrate" && a.migrate_to.empty()) {
    return "-a instant-migrate needs --migrate-to DIR, where the disks go";
  }
  const bool remote_instant = act.rfind("instant", 0) == 0 && backupfs::IsRemoteUri(a.remote.uri);
  if ((!remote_instant || act != "instant") && !a.nbd_serve.empty()) {
    return "--nbd-serve goes with -a instant -U naming a remote host";
  }
  if (act == "instant-list" || by_name) {
    const backupfs::StoreOptions& st = a.store;
    if (!st.endpoint.empty() || !st.region.empty() || !st.profile.empty() ||
        !st.cache_dir.empty()) {
      return "--s3-* options go with -i s3://...; -a " + act +
             " takes a bucket's settings from what -a instant recorded";
    }
    if (remote_instant) return std::nullopt;
    if (auto what = RemoteOption(a)) return *what + ": goes with -U naming a remote host";
    return std::nullopt;
  }
  if (a.input.empty()) return "-i/--input is required: the saveset directory";
  if (auto refusal = LocalOnlyRefusal(a)) return refusal;
  if (act == "consolidate" && a.until.empty()) {
    return "-a consolidate needs -u POINT: the restore point the new full backup equals";
  }
  if (act == "retention" && !a.keep_last && !a.keep_days) {
    return "-a retention needs --keep-last N and/or --keep-days D";
  }
  if ((a.keep_last || a.keep_days) && act != "retention") {
    return "--keep-last and --keep-days go with -a retention";
  }
  if (a.dry_run && act != "consolidate" && act != "retention") {
    return "--dry-run goes with -a consolidate and -a retention";
  }
  if (act == "retention" && !a.output.empty()) {
    return "-a retention works in place: -o goes with -a consolidate (a synthetic full)";
  }
  if (act == "instant") {
    if (remote_instant && a.nbd_serve.empty()) {
      return "-a instant -U " + a.remote.uri +
             " needs --nbd-serve ADDR:PORT: where this host serves the restore point over NBD";
    }
    if (!remote_instant) {
      if (auto what = RemoteOption(a)) return *what + ": goes with -U naming a remote host";
    }
    if (a.output.empty()) {
      return "-a instant needs -o WORKDIR: the overlays, boot files and the mount go there";
    }
  }
  if (act == "export" && a.nbd_socket.empty() == a.nbd_tcp.empty()) {
    return "-a export needs either --socket PATH or --tcp HOST:PORT";
  }
  const bool instant_only = !a.migrate_to.empty() || a.no_start || a.bandwidth_mib != 0;
  if (instant_only && act != "instant" && act != "instant-migrate" && act != "instant-resume") {
    return "--migrate-to, --bandwidth and --no-start go with the instant actions";
  }
  if ((!a.nbd_socket.empty() || !a.nbd_tcp.empty() || a.writable) && act != "export") {
    return "--socket, --tcp and --writable go with -a export";
  }
  return std::nullopt;
}

int ListInstant(const Args& args) {
  auto listing = backupfs::ListInstant(args.remote.uri);
  if (!listing.ok()) {
    std::fprintf(stderr, "backupfs-restore: %s\n", listing.status().message().c_str());
    return kExitFailure;
  }
  std::printf("%-24s %-8s %-20s %10s  %-12s %s\n", "NAME", "STATE", "POINT", "OVERLAY", "MOUNT",
              "MIGRATION");
  for (const auto& e : listing->domains) {
    const char* mount = e.mount == backupfs::MountState::kServing ? "mounted"
                        : e.mount == backupfs::MountState::kStale ? "stale"
                                                                  : "missing";
    std::printf("%-24s %-8s %-20s %10s  %-12s %s\n", e.name.c_str(),
                e.running ? "running" : "shut-off", e.record.point.c_str(),
                backupfs::FormatMib(e.overlay_bytes).c_str(), mount, e.migration.c_str());
    std::printf("    saveset %s, work directory %s\n", e.record.saveset.c_str(),
                e.record.workdir.c_str());
    if (!e.advice.empty()) std::printf("    to do: %s\n", e.advice.c_str());
  }
  for (const std::string& l : listing->leftovers) std::printf("leftover: %s\n", l.c_str());
  return kExitOk;
}

// The instant actions' remote host: -U with the ssh and TLS options.
backupfs::Result<backupfs::RemoteOptions> InstantRemote(const Args& args) {
  return backupfs::RemoteFromArgs(args.remote);
}

// -a instant: the summary line on success.
backupfs::Status InstantRecovery(const Args& args, SavesetPtr saveset, backupfs::RunLog& log,
                                 std::atomic<bool>& stop) {
  backupfs::InstantOptions o;
  BFS_ASSIGN_OR_RETURN(o.remote, InstantRemote(args));
  o.nbd_serve = args.nbd_serve;
  o.input = args.input;
  o.saveset = std::move(saveset);
  o.store = args.store;
  o.workdir = args.output;
  o.until = args.until;
  o.disk = args.disk;
  o.name = args.name;
  o.uri = args.remote.uri;
  o.migrate_to = args.migrate_to;
  o.bandwidth = uint64_t{args.bandwidth_mib} << 20;
  o.start = !args.no_start;
  o.progress = !args.noprogress;
  const auto begin = std::chrono::steady_clock::now();
  auto summary = backupfs::RunInstant(o, log, stop);
  if (!summary.ok()) return summary.status();
  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - begin;
  std::printf("instant recovery of %s: domain %s %s on %zu overlay(s) in %s (%.2f s)\n",
              summary->point.c_str(), summary->name.c_str(),
              summary->started ? "running" : "defined", summary->overlays.size(),
              args.output.c_str(), took.count());
  return backupfs::Status::Ok();
}

int Instant(const Args& args, SavesetPtr saveset) {
  if (args.action == "instant-list") return ListInstant(args);
  backupfs::RunLog log(args.verbose, args.syslog, /*to_stderr=*/true, "backupfs-restore");
  if (!OpenLogFile(args, log)) return kExitFailure;
  backupfs::SignalWatcher signals;
  backupfs::Status status = backupfs::Status::Ok();
  if (args.action == "instant") {
    status = InstantRecovery(args, std::move(saveset), log, *signals.flag());
  } else if (args.action == "instant-migrate") {
    backupfs::MigrateOptions m{args.remote.uri,
                               args.name,
                               args.migrate_to,
                               !args.noprogress,
                               uint64_t{args.bandwidth_mib} << 20,
                               {}};
    auto remote = InstantRemote(args);
    status = remote.ok() ? (m.remote = *remote, backupfs::MigrateInstant(m, log, *signals.flag()))
                         : remote.status();
  } else if (args.action == "instant-resume") {
    status = backupfs::ResumeInstant(args.remote.uri, args.name, !args.no_start, log);
  } else {
    auto remote = InstantRemote(args);
    status = remote.ok() ? backupfs::EndInstant(args.remote.uri, args.name, log, *remote)
                         : remote.status();
  }
  if (!status.ok()) {
    log.Error(status.message());
    return kExitFailure;
  }
  return kExitOk;
}

int Export(const Args& args, SavesetPtr saveset) {
  backupfs::RunLog log(args.verbose, args.syslog, /*to_stderr=*/true, "backupfs-restore");
  if (!OpenLogFile(args, log)) return kExitFailure;
  backupfs::SignalWatcher signals;
  backupfs::ExportOptions o;
  o.input = args.input;
  o.saveset = std::move(saveset);
  o.store = args.store;
  o.until = args.until;
  o.disk = args.disk;
  o.socket = args.nbd_socket;
  o.tcp = args.nbd_tcp;
  o.writable = args.writable;
  backupfs::Status s = backupfs::RunExport(o, log, *signals.flag(), [](const std::string& uri) {
    std::printf("%s\n", uri.c_str());
    std::fflush(stdout);
  });
  // A signal is how an export is meant to end.
  if (!s.ok() && signals.signal() == 0) {
    log.Error(s.message());
    return kExitFailure;
  }
  return kExitOk;
}

void PrintList(const char* what, const std::vector<std::string>& names) {
  if (names.empty()) return;
  std::printf("  %s:", what);
  for (const std::string& n : names) std::printf(" %s", n.c_str());
  std::printf("\n");
}

void PrintConsolidation(const backupfs::ConsolidateSummary& s, const Args& args, double seconds) {
  const backupfs::ConsolidationPlan& p = s.plan;
  if (!args.output.empty() && args.dry_run) {
    std::printf("would write %s: a standalone saveset whose full backup equals %s\n",
                args.output.c_str(), p.point.c_str());
    return;
  }
  if (!args.output.empty()) {
    std::printf(
        "wrote %s: a standalone saveset whose full backup equals %s, %s of data in "
        "%.2f s\n",
        args.output.c_str(), p.point.c_str(), backupfs::FormatMib(s.data_bytes).c_str(), seconds);
    return;
  }
  if (p.point.empty()) {
    std::printf("%s: every restore point is kept by the policy; nothing to fold\n",
                args.input.c_str());
    return;
  }
  if (p.nothing_to_do()) {
    std::printf("%s: %s is the full backup already; nothing to fold\n", args.input.c_str(),
                p.point.c_str());
    return;
  }
  std::printf("%s: %s %zu restore point(s) into a new full backup at %s, %s %zu file(s) (%s)\n",
              args.input.c_str(), args.dry_run ? "would fold" : "folded", p.folded_points.size(),
              p.point.c_str(), args.dry_run ? "would remove" : "removed", p.remove.size(),
              backupfs::FormatMib(p.remove_bytes).c_str());
  PrintList("folded", p.folded_points);
  PrintList("kept", p.kept_points);
  if (args.dry_run) {
    PrintList("files to remove", p.remove);
    PrintList("libvirt checkpoints to delete", p.libvirt_checkpoints);
    return;
  }
  std::printf("  new full backups: %s of data, %s written in %.2f s\n",
              backupfs::FormatMib(s.data_bytes).c_str(), backupfs::FormatMib(s.file_bytes).c_str(),
              seconds);
  PrintList("libvirt checkpoints left to delete", s.pending_checkpoints);
}

// -o of -a consolidate makes a local directory (renamed into place when complete).
bool OutputIsLocal(const Args& args) {
  if (args.output.empty()) return true;
  auto out = backupfs::OpenStorage(args.output, args.store);
  if (out.ok() && (*out)->LocalDir()) return true;
  std::fprintf(stderr,
               "backupfs-restore: -a consolidate -o %s: a synthetic full backup goes into a "
               "local directory (copy it into a store afterwards, e.g. with aws s3 sync)\n",
               args.output.c_str());
  return false;
}

// -a consolidate and -a retention, in a directory or a store alike.
int Consolidate(const Args& args, SavesetPtr saveset) {
  if (!OutputIsLocal(args)) return kExitUsage;
  backupfs::RunLog log(args.verbose, args.syslog, /*to_stderr=*/true, "backupfs-restore");
  if (!OpenLogFile(args, log)) return kExitFailure;
  backupfs::SignalWatcher signals;
  backupfs::ConsolidateOptions o;
  o.input = args.input;
  o.storage = std::move(saveset);
  o.point = args.until;
  o.output = args.output;
  o.dry_run = args.dry_run;
  o.uri = args.remote.uri;
  o.stop = signals.flag();
  if (args.action == "retention") {
    o.retention = backupfs::RetentionPolicy{args.keep_last, args.keep_days};
    o.now = std::time(nullptr);
  }
  const auto begin = std::chrono::steady_clock::now();
  auto summary = backupfs::RunConsolidate(o, log);
  if (!summary.ok()) {
    log.Error(summary.status().message());
    return kExitFailure;
  }
  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - begin;
  PrintConsolidation(*summary, args, took.count());
  return kExitOk;
}

// Verify reads each object once in its own pass, and dump reads only frame headers: a read
// cache in front of them would fetch whole blocks ahead, some of them twice. (A cache
// directory, when given, is still used: it keeps what the next run would fetch again.)
backupfs::StoreOptions StoreOptionsFor(const Args& args) {
  backupfs::StoreOptions o = args.store;
  const bool reads_once =
      args.action == "verify" || args.action == "dump" ||
      (args.action == "restore" && (args.output == "verify" || args.output == "dump"));
  if (reads_once && o.cache_dir.empty()) o.memory_cache_bytes = 0;
  return o;
}

void AddOptions(CLI::App& app, Args& a) {
  auto* general = "General options";
  app.add_option("-a,--action", a.action,
                 "dump, verify, restore (default), instant, instant-migrate, instant-list, "
                 "instant-resume, instant-end, export, consolidate or retention")
      ->check(
          CLI::IsMember({"dump", "verify", "restore", "instant", "instant-migrate", "instant-list",
                         "instant-resume", "instant-end", "export", "consolidate", "retention"}))
      ->group(general);
  app.add_option("-i,--input", a.input, "the saveset: a directory, or s3://BUCKET/PREFIX")
      ->group(general);
  app.add_option("-o,--output", a.output,
                 "restore: the target directory; dump: a file for the JSON ('dump' or '-': "
                 "standard output); 'verify' as -a verify")
      ->group(general);
  app.add_option("-u,--until", a.until,
                 "restore point: a checkpoint, a diff's id or 'copy' (default: the newest)")
      ->group(general);
  app.add_option("-s,--sequence", a.sequence,
                 "restore these data files of the saveset, in order (full or copy first)")
      ->group(general);
  app.add_option("-d,--disk", a.disk, "only this disk (target dev, e.g. vda)")->group(general);
  app.add_option("-w,--worker", a.workers, "disks restored in parallel (default: 2)")
      ->check(CLI::Range(1, 64))
      ->group(general);
  app.add_flag("-n,--noprogress", a.noprogress, "no progress bar")->group(general);
  app.add_option("-f,--socketfile", a.socket_file,
                 "qemu-nbd's socket (a disk suffix is added; default: a private directory)")
      ->group(general);
  app.add_flag("-r,--raw", a.raw, "copy raw disks' raw-image data files as they are")
      ->group(general);
  app.add_flag("-c,--adjust-config", a.adjust,
               "adjust the domain XML: new name, no UUID, disks at the restored images")
      ->group(general);
  app.add_flag("-D,--define", a.define, "define the restored domain in libvirt (implies -c)")
      ->group(general);
  app.add_option("-C,--config-file", a.config_file,
                 "name of the domain XML written to the output (default: vmconfig.xml); an "
                 "existing file is taken as the XML to restore with")
      ->group(general);
  app.add_option("-N,--name", a.name, "name of the restored domain (default: restore_<name>)")
      ->group(general);
  app.add_option("-B,--buffsize", a.buffsize, "accepted for virtnbdrestore; reads go by chunk")
      ->group(general);
  app.add_flag("-A,--preallocate", a.preallocate, "fully allocate the restored images")
      ->group(general);
  app.add_flag("--compress", a.compress, "write compressed qcow2 clusters")->group(general);
  app.add_flag("--qemu-writer", a.qemu_writer,
               "write qcow2 images through qemu-nbd (QEMU's qcow2 driver) instead of directly")
      ->group(general);
  app.add_option("--format", a.format, "image format: auto (each disk's own), qcow2 or raw")
      ->check(CLI::IsMember({"auto", "qcow2", "raw"}))
      ->group(general);
  app.add_option("--device", a.devices, "write DISK into an existing block device: vda=/dev/vg/lv")
      ->group(general);
  app.add_flag("--force", a.force, "replace existing images and files in the output directory")
      ->group(general);

  auto* instant = "Instant recovery and export options";
  app.add_option("--migrate-to", a.migrate_to,
                 "instant, instant-migrate: copy the running domain's disks into this directory "
                 "and switch it onto them (live restore)")
      ->group(instant);
  app.add_option("--bandwidth", a.bandwidth_mib,
                 "instant, instant-migrate: at most this many MiB/s per disk copied (default: "
                 "unlimited)")
      ->check(CLI::Range(1u, 1u << 20))
      ->group(instant);
  app.add_flag("--no-start", a.no_start, "instant, instant-resume: define, do not start")
      ->group(instant);
  app.add_option("--socket", a.nbd_socket, "export: serve on this unix socket")->group(instant);
  app.add_option("--tcp", a.nbd_tcp, "export: serve on this TCP address, HOST:PORT")
      ->group(instant);
  app.add_flag("--writable", a.writable,
               "export: accept writes, into an overlay discarded when the export ends")
      ->group(instant);
  app.add_option("--nbd-serve", a.nbd_serve,
                 "instant with a remote -U: serve the restore point from this host over NBD on "
                 "ADDR:PORT (disk i on PORT+i); the remote domain's overlays are backed by it")
      ->group(instant);

  auto* maintenance = "Consolidation and retention options";
  app.add_option("--keep-last", a.keep_last,
                 "retention: keep the newest N restore points (fold older ones into the full)")
      ->check(CLI::Range(1u, 1u << 20))
      ->group(maintenance);
  app.add_option("--keep-days", a.keep_days,
                 "retention: keep the restore points younger than D days")
      ->check(CLI::Range(0u, 1u << 20))
      ->group(maintenance);
  app.add_flag("--dry-run", a.dry_run,
               "consolidate, retention: print what would be folded and removed, change nothing")
      ->group(maintenance);

  auto* remote = "Remote restore options";
  app.add_option("-U,--uri", a.remote.uri,
                 "libvirt URI (default: qemu:///system); qemu+ssh://[USER@]HOST[:PORT]/system: "
                 "restore into -o on that host, -D defines the domain there")
      ->group(remote);
  app.add_option("--user", a.remote.user, "libvirt user (SASL)")->group(remote);
  app.add_option("--password", a.remote.password, "libvirt password (never logged)")->group(remote);
  app.add_option("--ssh-user", a.remote.ssh_user,
                 "ssh user on the remote host (default: the URI's)")
      ->group(remote);
  app.add_option("--ssh-port", a.remote.ssh_port, "ssh port of the remote host (default: 22)")
      ->check(CLI::Range(1, 65535))
      ->group(remote);
  app.add_option("--ssh-private-key", a.remote.ssh_private_key,
                 "ssh private key (default: the URI's keyfile, ~/.ssh/id_*, the agent)")
      ->group(remote);
  app.add_option("-P,--nbd-port", a.remote.nbd_port,
                 "TCP port of qemu-nbd on the remote host (default: 10809; with -w N, the "
                 "ports P to P+N-1)")
      ->check(CLI::Range(1, 65535))
      ->group(remote);
  app.add_option("-I,--nbd-ip", a.remote.nbd_ip,
                 "address qemu-nbd listens on, on the remote host (default: the URI's host)")
      ->group(remote);
  app.add_option("--nbd-connect", a.remote.nbd_connect,
                 "connect to HOST[:PORT] instead of the -I/-P address (a proxy, port forward, "
                 "NAT); disks are then written one after another")
      ->group(remote);
  app.add_flag("--tls", a.remote.tls, "NBD over TLS, with the remote host's libvirt x509 setup")
      ->group(remote);
  app.add_option("--tls-cert", a.remote.tls_cert,
                 "client's x509 directory: ca-cert.pem, client-cert.pem, client-key.pem "
                 "(default: /etc/pki/qemu)")
      ->group(remote);

  backupfs::AddStoreOptions(app, a.store, "S3 options");

  auto* logging = "Logging options";
  app.add_option("-L,--logfile", a.logfile, "also write the log to this file")->group(logging);
  app.add_flag("--syslog", a.syslog, "also log to syslog")->group(logging);
  app.add_flag("-v,--verbose", a.verbose, "debug lines and notes too")->group(logging);
  app.add_flag("--nocolor", a.nocolor, "accepted for virtnbdrestore; our lines have no colours")
      ->group(logging);
  app.set_version_flag("-V,--version", "backupfs-restore " BACKUPFS_VERSION);
}

}  // namespace

int Main(int argc, char** argv) {
  backupfs::SignalWatcher::BlockWakeup();
  CLI::App app{"backupfs-restore: restore, dump and verify backupfs and virtnbdbackup savesets",
               "backupfs-restore"};
  Args args;
  AddOptions(app, args);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  if (auto error = CheckActionArgs(args)) {
    std::fprintf(stderr, "backupfs-restore: %s\n", error->c_str());
    return kExitUsage;
  }
  const bool by_name = args.action.rfind("instant-", 0) == 0;  // no -i: the domain's record
  SavesetPtr saveset;
  if (!by_name) {
    auto opened = backupfs::OpenStorage(args.input, StoreOptionsFor(args));
    if (!opened.ok()) {
      std::fprintf(stderr, "backupfs-restore: %s\n", opened.status().message().c_str());
      return kExitFailure;
    }
    saveset = std::move(opened).value();
  }
  if (args.action.rfind("instant", 0) == 0) return Instant(args, std::move(saveset));
  if (args.action == "export") return Export(args, std::move(saveset));
  if (args.action == "consolidate" || args.action == "retention") {
    return Consolidate(args, std::move(saveset));
  }
  if (args.action == "dump" || (args.action == "restore" && args.output == "dump")) {
    return Dump(args, *saveset);
  }
  if (args.action == "verify" || (args.action == "restore" && args.output == "verify")) {
    return Verify(args, *saveset);
  }
  return Restore(args, std::move(saveset));
}

int main(int argc, char** argv) {
  try {
    return Main(argc, argv);
  } catch (const std::exception& e) {  // a bug or exhausted memory: say so, never abort
    std::fprintf(stderr, "backupfs-restore: internal error: %s\n", e.what());
    return kExitFailure;
  }
}
