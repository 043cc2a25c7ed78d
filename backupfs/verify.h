// `backupfs-restore -a verify`: checks every data file of a saveset against everything that
// can vouch for it: the stream structure, the `.chksum` adler32, the sidecar index (which must
// match the frames) and every chunk's checksum (XXH3 from our index, lz4's own checksums).
#pragma once

#include <cstdint>
#include <string>

#include "backupfs/saveset.h"
#include "stream/status.h"

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
};

// Verifies one data file; each problem goes to the reporter and is counted in *summary.
void VerifyDataFile(const std::string& path, VerifyReporter& reporter, VerifySummary* summary);

// Verifies every data file of `dir` (only `disk`'s when non-empty). Leftover `.partial` files
// are problems (an interrupted backup); orphaned sidecars are notes. Fails only when the
// directory cannot be listed; a saveset with no data file at all is a problem.
Result<VerifySummary> VerifySaveset(const std::string& dir, const std::string& disk,
                                    VerifyReporter& reporter);

}  // namespace backupfs
