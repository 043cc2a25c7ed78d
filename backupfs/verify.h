// `backupfs-restore -a verify`: checks every data file of a saveset against everything that
// can vouch for it: the stream structure, the `.chksum` adler32, the sidecar index (which must
// match the frames) and every chunk's checksum (XXH3 from our index, lz4's own checksums).
//
// Each file is read once, front to back, wherever the saveset lives: a data file in one
// sequential pass (large reads, nothing fetched twice), its `.idx` and `.chksum` in one read
// each. The checks that look at bytes the pass has gone by (the structure scan, the index
// against the frames) are answered from what the pass kept: the head and tail of the file and
// its frame headers, never its payload.
#pragma once

#include <cstdint>
#include <string>

#include "backupfs/saveset.h"
#include "stream/status.h"
#include "stream/storage.h"

namespace backupfs {

// Receives the findings as they come, so a long verify shows progress and names each problem
// (file and byte offset) the moment it is found.
class VerifyReporter {
 public:
  virtual ~VerifyReporter() = default;
  virtual void Problem(const std::string& message) = 0;  // the saveset is not intact
  virtual void Note(const std::string& message) = 0;     // worth knowing, not a failure
  virtual void FileOk(const std::string& file, const std::string& detail) = 0;
};

struct VerifySummary {
  uint64_t files = 0;
  uint64_t problems = 0;
  uint64_t chunks_checked = 0;
  uint64_t bytes_checked = 0;  // uncompressed bytes whose checksum was verified
  // Bytes of data files read beyond one pass over each (a damaged file's structure can make
  // the checks ask for payload the pass did not keep): 0 for an intact saveset.
  uint64_t bytes_reread = 0;
};

// Verifies data file `name` of `saveset`; each problem goes to the reporter and is counted in
// *summary. Files are named in messages as the storage describes them (path or s3:// URL).
void VerifyDataFile(const Storage& saveset, const std::string& name, VerifyReporter& reporter,
                    VerifySummary* summary);

// Verifies every data file of `saveset` (only `disk`'s when non-empty). Leftover `.partial`
// files are problems (an interrupted backup); orphaned sidecars are notes. Fails only when the
// saveset cannot be listed; a saveset with no data file at all is a problem.
Result<VerifySummary> VerifySaveset(const Storage& saveset, const std::string& disk,
                                    VerifyReporter& reporter);
// A saveset in a local directory.
Result<VerifySummary> VerifySaveset(const std::string& dir, const std::string& disk,
                                    VerifyReporter& reporter);

}  // namespace backupfs
