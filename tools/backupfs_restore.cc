// backupfs-restore: dump and verify savesets (virtnbdrestore's option names).
// Parses arguments and maps results to exit codes; the work is in backupfs/.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "backupfs/dump.h"
#include "backupfs/saveset.h"
#include "backupfs/verify.h"
#include "stream/file.h"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

struct Args {
  std::string input;
  std::string action = "restore";
  std::string output;
  std::string disk;
  bool verbose = false;
};

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

int Verify(const Args& args) {
  PrintingReporter reporter(args.verbose);
  auto summary = backupfs::VerifySaveset(args.input, args.disk, reporter);
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

int Dump(const Args& args) {
  auto listing = backupfs::ListSaveset(args.input, args.disk);
  if (!listing.ok()) {
    std::fprintf(stderr, "backupfs-restore: %s\n", listing.status().message().c_str());
    return kExitFailure;
  }
  int rc = kExitOk;
  auto entries = nlohmann::ordered_json::array();
  for (const auto& f : listing->data_files) {
    auto entry = backupfs::DumpDataFile(args.input + "/" + f.file);
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

}  // namespace

int Main(int argc, char** argv) {
  CLI::App app{"Dump and verify backupfs and virtnbdbackup savesets", "backupfs-restore"};
  Args args;
  app.set_version_flag("-V,--version", "backupfs-restore " BACKUPFS_VERSION);
  app.add_option("-i,--input", args.input, "Directory holding the saveset")->required();
  app.add_option("-a,--action", args.action, "Action: dump or verify (default: restore)")
      ->check(CLI::IsMember({"dump", "verify", "restore"}));
  app.add_option("-o,--output", args.output,
                 "Output: for dump, a file for the JSON ('dump' or '-': standard output)");
  app.add_option("-d,--disk", args.disk, "Process only this disk (target dev, e.g. vda)");
  app.add_flag("-v,--verbose", args.verbose, "Also print notes (files without checksums...)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  if (args.action == "dump" || (args.action == "restore" && args.output == "dump")) {
    return Dump(args);
  }
  if (args.action == "verify") return Verify(args);
  std::fprintf(stderr,
               "backupfs-restore: action 'restore' is not available in this version; "
               "use -a dump or -a verify\n");
  return kExitUsage;
}

int main(int argc, char** argv) {
  try {
    return Main(argc, argv);
  } catch (const std::exception& e) {  // a bug or exhausted memory: say so, never abort
    std::fprintf(stderr, "backupfs-restore: internal error: %s\n", e.what());
    return kExitFailure;
  }
}
