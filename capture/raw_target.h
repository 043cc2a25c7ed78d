// Where -t raw writes a disk's image: a sparse file in a local directory, or an object in a
// store, which has no holes, so that there the gaps between the extents read are written as
// zeros (the whole virtual size is uploaded). Either way nothing is visible under the image's
// name until Finish() (a `.partial` renamed, a multipart upload completed), and a target
// destroyed unfinished leaves nothing.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "stream/status.h"
#include "stream/storage.h"
#include "stream/writer.h"

namespace backupfs {

class RawTarget {
 public:
  // `size`: the disk's virtual size. The local file goes where the saveset's LocalDir() is.
  static Result<std::unique_ptr<RawTarget>> Create(Storage& saveset, const std::string& name,
                                                   uint64_t size);
  virtual ~RawTarget() = default;

  // Offsets come in ascending order, each write past the end of the one before (as
  // ReadExtents delivers them), inside the virtual size.
  virtual Status Write(uint64_t offset, std::span<const uint8_t> bytes) = 0;
  // Commits the image; `may_commit` (as StreamWriter::Finish's) is asked once it is stored.
  virtual Status Finish(const StreamWriter::CommitCheck& may_commit) = 0;
  // Bytes of the image written so far (the data; in a store, the zeros between too).
  virtual uint64_t bytes_written() const = 0;
};

}  // namespace backupfs
