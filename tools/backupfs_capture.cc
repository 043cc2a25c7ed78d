// backupfs-capture: backups of running libvirt domains over NBD (virtnbdbackup's option names).
// Parses arguments and maps results to exit codes; the work is in capture/.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>

#include "capture/backup.h"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kDefaultLz4Level = 2;  // virtnbdbackup's -z without a level

struct Args {
  std::string domain;
  std::string level;
  std::string output;
  std::string uri = "qemu:///system";
  std::string compress;  // -z's optional level
  bool verbose = false;
};

backupfs::CaptureLevel ParseLevel(const std::string& level) {
  using backupfs::CaptureLevel;
  if (level == "copy") return CaptureLevel::kCopy;
  if (level == "inc") return CaptureLevel::kInc;
  if (level == "diff") return CaptureLevel::kDiff;
  if (level == "auto") return CaptureLevel::kAuto;
  return CaptureLevel::kFull;
}

const char* LevelName(backupfs::CaptureLevel level) {
  switch (level) {
    case backupfs::CaptureLevel::kCopy:
      return "copy";
    case backupfs::CaptureLevel::kInc:
      return "inc";
    case backupfs::CaptureLevel::kDiff:
      return "diff";
    default:
      return "full";
  }
}

// Maps -z / -zN to an lz4 level; nullopt without -z.
std::optional<int> Lz4Level(const CLI::Option* z, const std::string& value) {
  if (z->count() == 0) return std::nullopt;
  if (value.empty()) return kDefaultLz4Level;
  return std::stoi(value);
}

// "checkpoint virtnbdbackup.1", "changes since virtnbdbackup.1" (diff) or "whole disk" (copy).
std::string What(const backupfs::BackupSummary& s) {
  switch (s.level) {
    case backupfs::CaptureLevel::kCopy:
      return "whole disk, no checkpoint";
    case backupfs::CaptureLevel::kDiff:
      return "changes since " + s.parent + ", no checkpoint";
    default:
      return "checkpoint " + s.checkpoint;
  }
}

void PrintSummary(const backupfs::BackupSummary& s, double seconds) {
  uint64_t read = 0, written = 0;
  for (const auto& d : s.disks) {
    std::printf("%s: %s, %llu bytes of %llu read, %llu bytes written\n", d.disk.c_str(),
                d.file.c_str(), static_cast<unsigned long long>(d.data_bytes),
                static_cast<unsigned long long>(d.virtual_size),
                static_cast<unsigned long long>(d.file_bytes));
    read += d.data_bytes;
    written += d.file_bytes;
  }
  std::printf("%s backup, %s: %llu bytes read, %llu written in %.2f s (%.1f MiB/s)\n",
              LevelName(s.level), What(s).c_str(), static_cast<unsigned long long>(read),
              static_cast<unsigned long long>(written), seconds,
              seconds > 0 ? static_cast<double>(read) / (1 << 20) / seconds : 0.0);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "backupfs-capture: copy, full, incremental and differential backups of libvirt domains"};
  app.set_version_flag("-V,--version", "backupfs-capture " BACKUPFS_VERSION);
  Args args;
  app.add_option("-d,--domain", args.domain, "domain to back up")->required();
  app.add_option("-l,--level", args.level, "backup level")
      ->required()
      ->check(CLI::IsMember({"copy", "full", "inc", "diff", "auto"}));
  app.add_option("-o,--output", args.output, "output directory (the saveset)")->required();
  CLI::Option* z = app.add_option("-z,--compress", args.compress,
                                  "compress with lz4 (optional level, default 2)")
                       ->expected(0, 1)
                       ->check(CLI::Range(0, 12));
  app.add_option("-U,--uri", args.uri, "libvirt connection URI")->capture_default_str();
  app.add_flag("-v,--verbose", args.verbose, "log each step to stderr");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitFailure;
  }

  backupfs::BackupOptions options;
  options.uri = args.uri;
  options.domain = args.domain;
  options.output_dir = args.output;
  options.level = ParseLevel(args.level);
  options.lz4_level = Lz4Level(z, args.compress);
  if (args.verbose) {
    options.log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  }
  const auto start = std::chrono::steady_clock::now();
  auto summary = backupfs::RunBackup(options);
  if (!summary.ok()) {
    std::fprintf(stderr, "backupfs-capture: %s\n", summary.status().message().c_str());
    return kExitFailure;
  }
  const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
  PrintSummary(*summary, elapsed.count());
  return kExitOk;
}
