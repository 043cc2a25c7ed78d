// Writes one data file of the stream format, byte-compatible with virtnbdbackup (stream
// version 2, optionally lz4-compressed with the trailer), plus our sidecar index (with an
// XXH3-64 per chunk) and virtnbdbackup's `.chksum` (adler32 of the whole file).
//
// The file is written through the storage layer (stream/storage.h): as `<path>.partial`,
// renamed to `<path>` by Finish(), in a directory; as a multipart upload completed by Finish()
// in a bucket. Finish() stores the sidecars first and commits the data file last, so a data
// file never looks complete without them, and a crash never leaves a data file that looks
// complete. A writer destroyed before Finish() leaves nothing (the `.partial` file removed, the
// upload aborted).
//
// Not thread-safe: one thread drives a writer.
#pragma once

#include "stream/xxh3.h"

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "stream/checksum.h"
#include "stream/file.h"
#include "stream/index.h"
#include "stream/metadata.h"
#include "stream/status.h"
#include "stream/storage.h"
#include "stream/trailer.h"

namespace backupfs {

// QEMU's NBD maximum request size: virtnbdbackup reads (and compresses) at most this much at a
// time, and virtnbdrestore 1.9.15 expects a split trailer entry for frames at least this long.
inline constexpr uint64_t kNbdMaxRequest = 32u << 20;

struct WriterOptions {
  std::optional<int> lz4_level;  // compress each chunk when set
  // Uncompressed bytes per lz4 frame in data frames of at least kNbdMaxRequest bytes (shorter
  // frames are one lz4 frame). Smaller than virtnbdbackup's 32 MiB so that a random read
  // decodes at most 4 MiB; readers take any size the trailer lists.
  uint64_t compressed_chunk = 4u << 20;
  uint64_t checksum_granule = 1u << 20;  // uncompressed: index chunk per granule of disk
  bool durable = true;                   // fsync the files and the directory
  // lz4: chunks compressed (and hashed) in parallel on this many worker threads while the
  // caller appends; 1 compresses on the caller's thread. The file is the same either way.
  unsigned compress_threads = 1;
};

class StreamWriter {
 public:
  // Creates `<path>.partial` and writes the meta frame. meta.data_size must be the sum of the
  // data frames to come (it is written first, as in virtnbdbackup). An empty meta.date is set
  // to the current local time.
  static Result<std::unique_ptr<StreamWriter>> Create(Storage& storage, std::string_view name,
                                                      StreamMetadata meta,
                                                      const WriterOptions& options);
  // A data file in a local directory.
  static Result<std::unique_ptr<StreamWriter>> Create(const std::string& path, StreamMetadata meta,
                                                      const WriterOptions& options);
  ~StreamWriter();

  // Frames must come in ascending, non-overlapping order inside the disk's virtual size.
  // A data frame is BeginData() followed by Append() calls that add up to `length` bytes.
  Status BeginData(uint64_t offset, uint64_t length);
  Status Append(std::span<const uint8_t> bytes);
  Status AddData(uint64_t offset, std::span<const uint8_t> bytes);
  Status AddZero(uint64_t offset, uint64_t length);

  // What a writer asks just before its commit point, once the data is stored (e.g. whether the
  // run still holds the saveset's lock): an error stops the commit.
  using CommitCheck = std::function<Status()>;

  // Ends the stream, writes the sidecars and renames the file into place. `may_commit`, when
  // given, is asked after the data is stored and before the sidecars: its error abandons the
  // file and is returned as it is.
  Status Finish(const CommitCheck& may_commit = {});

  uint64_t bytes_written() const { return file_pos_; }
  const StreamIndex& index() const { return index_; }

 private:
  StreamWriter(Storage& storage, std::string name, std::unique_ptr<ObjectWriter> out,
               StreamMetadata meta, const WriterOptions& options);
  // Appends to the file; `summed` when adler_ already has the bytes.
  Status Write(std::span<const uint8_t> bytes, bool summed = false);
  Status WriteNow(std::span<const uint8_t> bytes, bool summed = false);
  Status Flush();  // drains the queue, then writes the buffer
  Status FlushBuffer();
  Status Emit(std::span<const uint8_t> bytes);  // to the file, remembering its two ends
  Status RunFront();
  Status Drain();
  Status CompressPendingInBackground();
  Status CheckFrame(uint64_t offset, uint64_t length);
  Status AppendRaw(std::span<const uint8_t> bytes);
  Status HashAndWriteRaw(std::span<const uint8_t> bytes, bool summed);
  Status AppendCompressed(std::span<const uint8_t> bytes);
  Status CloseRawChunk();
  Status CompressPending();
  Status WriteTail();
  void Abandon();

  std::unique_ptr<Storage> owned_storage_;  // Create(path): the file's directory
  Storage& storage_;
  const std::string name_;  // the data file's name in storage_
  const std::string path_;  // its path or URL, for messages
  std::unique_ptr<ObjectWriter> out_;
  StreamMetadata meta_;
  const WriterOptions options_;
  std::vector<uint8_t> buffer_;  // pending writes, flushed when large
  uint64_t file_pos_ = 0;        // bytes of the file produced so far (buffer included)
  BackgroundAdler32 adler_;
  StreamIndex index_;
  std::vector<TrailerEntry> trailer_;
  uint32_t frames_ = 0;
  uint64_t prev_end_ = 0;
  uint64_t data_total_ = 0;
  // The data frame being appended to.
  bool in_data_ = false;
  uint64_t frame_start_ = 0;
  uint64_t frame_length_ = 0;
  uint64_t frame_done_ = 0;
  // Uncompressed: the chunk being hashed. Compressed: the bytes waiting to be compressed.
  std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> hash_;
  Chunk chunk_;
  std::vector<uint8_t> pending_;
  bool finished_ = false;
  Status io_error_;  // the first failed write; sticky
  // Background compression: steps in file order, run front first. A compressed chunk waits
  // for its worker; every write or index entry after it waits in the queue behind it.
  struct QueuedStep {
    bool compression = false;  // a chunk being compressed (counts against compress_threads)
    std::function<Status()> run;
  };
  std::deque<QueuedStep> queue_;
  unsigned compressing_ = 0;  // compression steps in queue_
  size_t frame_chunks_ = 0;   // lz4 chunks of the current data frame so far
  // The file's first and last kIdentitySpan bytes (tail_ a ring: byte p of the file at
  // p % kIdentitySpan), for its identity in the sidecar index without reading it back.
  std::vector<uint8_t> head_;
  std::vector<uint8_t> tail_;
};

}  // namespace backupfs
