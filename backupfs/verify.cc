#include "backupfs/verify.h"

#include <algorithm>
#include <filesystem>

#include "stream/checksum.h"
#include "stream/reader.h"
#include "stream/scanner.h"

namespace backupfs {
namespace {

// Compares the `.chksum` file, when there is one, with the adler32 of the data file.
void CheckAdler(const std::string& path, VerifyReporter& reporter, VerifySummary* summary,
                std::string* detail) {
  const std::string sum_path = path + ".chksum";
  if (!std::filesystem::exists(sum_path)) {
    *detail += ", no .chksum";
    return;
  }
  Result<uint32_t> expected = ReadChecksumFile(sum_path);
  Result<uint32_t> actual = expected.ok() ? Adler32OfFile(path) : expected.status();
  if (!actual.ok()) {
    reporter.Problem(actual.status().message());
    ++summary->problems;
  } else if (*actual != *expected) {
    reporter.Problem(path + ": adler32 is " + std::to_string(*actual) + ", " + sum_path + " says " +
                     std::to_string(*expected));
    ++summary->problems;
  } else {
    *detail += ", adler32 ok";
  }
}

// Reads every chunk through the reader and checks it.
void CheckChunks(StreamReader& reader, VerifyReporter& reporter, VerifySummary* summary,
                 std::string* detail) {
  uint64_t checked = 0;
  for (const Chunk& c : reader.index().chunks) {
    if (c.kind != ChunkKind::kData || (!c.has_checksum && !c.compressed)) continue;
    Status s = reader.VerifyChunk(c);
    if (!s.ok()) {
      reporter.Problem(s.message());
      ++summary->problems;
      continue;
    }
    ++checked;
    ++summary->chunks_checked;
    summary->bytes_checked += c.length;
  }
  *detail += ", " + std::to_string(checked) + " chunks checked";
}

}  // namespace

void VerifyDataFile(const std::string& path, VerifyReporter& reporter, VerifySummary* summary) {
  const uint64_t problems_before = summary->problems;
  ++summary->files;
  auto fail = [&](const Status& s) {
    reporter.Problem(s.message());
    ++summary->problems;
  };
  Result<FileSource> src = FileSource::Open(path);
  if (!src.ok()) return fail(src.status());
  Result<StreamLayout> layout = ScanStream(*src);
  if (!layout.ok()) return fail(layout.status());
  std::string detail = std::to_string(layout->frames.size()) + " frames";
  CheckAdler(path, reporter, summary, &detail);

  ReaderOptions options;
  options.cache_bytes = 0;
  Result<std::unique_ptr<StreamReader>> reader = StreamReader::Open(path, options);
  if (!reader.ok()) return fail(reader.status());
  StreamReader& r = **reader;
  if (!r.index_problem().empty()) {
    fail(Status::Corruption(r.index_problem()));
  } else if (r.index_origin() == IndexOrigin::kSidecar) {
    Status s = CheckIndexMatchesLayout(r.index(), *layout, path);
    if (!s.ok()) return fail(s);
    detail += ", index ok";
  } else {
    detail += ", no index";
  }
  const auto& chunks = r.index().chunks;
  if (!r.meta().compressed() &&
      std::none_of(chunks.begin(), chunks.end(), [](const Chunk& c) { return c.has_checksum; }) &&
      std::any_of(chunks.begin(), chunks.end(),
                  [](const Chunk& c) { return c.kind == ChunkKind::kData; })) {
    reporter.Note(path + ": no checksums cover its data (an index built by scanning)");
  }
  CheckChunks(r, reporter, summary, &detail);
  if (summary->problems == problems_before) reporter.FileOk(path, detail);
}

Result<VerifySummary> VerifySaveset(const std::string& dir, const std::string& disk,
                                    VerifyReporter& reporter) {
  BFS_ASSIGN_OR_RETURN(SavesetListing listing, ListSaveset(dir, disk));
  VerifySummary summary;
  for (const std::string& p : listing.partial_files) {
    reporter.Problem(dir + "/" + p + ": leftover of an interrupted backup");
    ++summary.problems;
  }
  for (const std::string& o : listing.orphan_sidecars) {
    reporter.Note(dir + "/" + o + ": its data file is missing");
  }
  if (listing.data_files.empty()) {
    reporter.Problem(dir + ": no data files" + (disk.empty() ? "" : " for disk " + disk));
    ++summary.problems;
  }
  for (const DataFileName& f : listing.data_files) {
    VerifyDataFile(dir + "/" + f.file, reporter, &summary);
  }
  return summary;
}

}  // namespace backupfs
