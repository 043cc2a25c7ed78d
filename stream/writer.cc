#include "stream/writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <future>

#include "stream/frame.h"
#include "stream/local_storage.h"
#include "stream/lz4_chunk.h"

namespace backupfs {
namespace {

constexpr size_t kBufferSize = 1u << 20;
constexpr size_t kBackgroundCompressMin = 1u << 20;

std::span<const uint8_t> AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Python's datetime.now().isoformat(): local time with microseconds, no zone.
std::string NowIso8601() {
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()) %
            std::chrono::seconds(1);
  std::tm tm;
  localtime_r(&t, &tm);
  char text[40];
  size_t n = std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(text + n, sizeof(text) - n, ".%06lld", static_cast<long long>(us.count()));
  return text;
}

// The file as far as IdentifyDataFile reads it: its first and last kIdentitySpan bytes, kept
// by Emit() (a ring for the tail).
class EndsSource final : public ByteSource {
 public:
  EndsSource(const std::vector<uint8_t>& head, const std::vector<uint8_t>& tail, uint64_t size,
             const std::string& name)
      : head_(head), tail_(tail), size_(size), name_(name) {}
  uint64_t size() const override { return size_; }
  const std::string& name() const override { return name_; }
  Status ReadAt(uint64_t offset, std::span<uint8_t> out) const override {
    if (offset + out.size() <= head_.size()) {
      std::memcpy(out.data(), head_.data() + offset, out.size());
      return Status::Ok();
    }
    if (offset + kIdentitySpan < size_ || offset + out.size() > size_) {
      return Status::InvalidArgument(name_ + ": identity read outside the kept ends");
    }
    for (size_t i = 0; i < out.size(); ++i) out[i] = tail_[(offset + i) % kIdentitySpan];
    return Status::Ok();
  }

 private:
  const std::vector<uint8_t>& head_;
  const std::vector<uint8_t>& tail_;
  const uint64_t size_;
  const std::string& name_;
};

}  // namespace

Result<std::unique_ptr<StreamWriter>> StreamWriter::Create(const std::string& path,
                                                           StreamMetadata meta,
                                                           const WriterOptions& options) {
  const std::filesystem::path p(path);
  std::unique_ptr<Storage> dir = OpenLocalStorage(p.parent_path().string());
  BFS_ASSIGN_OR_RETURN(std::unique_ptr<StreamWriter> w,
                       Create(*dir, p.filename().string(), std::move(meta), options));
  w->owned_storage_ = std::move(dir);
  return w;
}

Result<std::unique_ptr<StreamWriter>> StreamWriter::Create(Storage& storage, std::string_view name,
                                                           StreamMetadata meta,
                                                           const WriterOptions& options) {
  const std::string path = storage.Describe(name);
  if (options.compressed_chunk == 0 || options.checksum_granule == 0) {
    return Status::InvalidArgument(path + ": chunk sizes must be positive");
  }
  if (options.lz4_level && options.compressed_chunk > kNbdMaxRequest) {
    return Status::InvalidArgument(path + ": lz4 chunks larger than 32 MiB are not readable " +
                                   "by virtnbdrestore");
  }
  meta.compression_level = options.lz4_level;
  meta.stream_version = 2;
  if (meta.date.empty()) meta.date = NowIso8601();
  PutOptions put;
  put.durable = options.durable;
  BFS_ASSIGN_OR_RETURN(std::unique_ptr<ObjectWriter> out, storage.Create(name, put));
  std::unique_ptr<StreamWriter> w(
      new StreamWriter(storage, std::string(name), std::move(out), std::move(meta), options));
  const std::string json = EncodeMetadata(w->meta_);
  BFS_RETURN_IF_ERROR(w->Write(EncodeFrameHeader({FrameKind::kMeta, 0, json.size()})));
  BFS_RETURN_IF_ERROR(w->Write(AsBytes(json)));
  BFS_RETURN_IF_ERROR(w->Write(AsBytes(kTerminator)));
  return w;
}

StreamWriter::StreamWriter(Storage& storage, std::string name, std::unique_ptr<ObjectWriter> out,
                           StreamMetadata meta, const WriterOptions& options)
    : storage_(storage),
      name_(std::move(name)),
      path_(storage.Describe(name_)),
      out_(std::move(out)),
      meta_(std::move(meta)),
      options_(options),
      hash_(XXH3_createState(), &XXH3_freeState) {
  buffer_.reserve(kBufferSize);
  index_.compressed = options.lz4_level.has_value();
  index_.checksum_granule = options.lz4_level ? options.compressed_chunk : options.checksum_granule;
}

StreamWriter::~StreamWriter() {
  if (!finished_) Abandon();
}

void StreamWriter::Abandon() {
  out_.reset();
  finished_ = true;
}

// A failed write leaves a hole in the file: every later call, Finish() included, fails
// with the first error, so a damaged file is never completed.
Status StreamWriter::Write(std::span<const uint8_t> bytes, bool summed) {
  if (queue_.empty()) return WriteNow(bytes, summed);
  // Behind chunks still being compressed: keep the file order.
  std::vector<uint8_t> copy(bytes.begin(), bytes.end());
  queue_.push_back(
      {false, [this, copy = std::move(copy), summed] { return WriteNow(copy, summed); }});
  return io_error_;
}

Status StreamWriter::WriteNow(std::span<const uint8_t> bytes, bool summed) {
  if (!io_error_.ok()) return io_error_;
  if (!summed) adler_.Update(bytes);
  file_pos_ += bytes.size();
  if (buffer_.size() + bytes.size() > kBufferSize) BFS_RETURN_IF_ERROR(FlushBuffer());
  if (bytes.size() >= kBufferSize) {
    return io_error_ = Emit(bytes);
  }
  buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
  return Status::Ok();
}

Status StreamWriter::Flush() {
  BFS_RETURN_IF_ERROR(Drain());
  return FlushBuffer();
}

// Runs the oldest queued step: a compressed chunk (waiting for its worker) or a write queued
// behind one. Index entries and trailer sizes are recorded here, in file order.
Status StreamWriter::RunFront() {
  QueuedStep step = std::move(queue_.front());
  queue_.pop_front();
  if (step.compression) compressing_--;
  Status s = step.run();
  if (!s.ok() && io_error_.ok()) io_error_ = s;
  return s;
}

Status StreamWriter::Drain() {
  while (!queue_.empty()) BFS_RETURN_IF_ERROR(RunFront());
  return io_error_;
}

Status StreamWriter::FlushBuffer() {
  if (!io_error_.ok()) return io_error_;
  io_error_ = Emit(buffer_);
  buffer_.clear();
  return io_error_;
}

Status StreamWriter::Emit(std::span<const uint8_t> bytes) {
  BFS_RETURN_IF_ERROR(out_->Append(bytes));
  const size_t head = std::min<uint64_t>(bytes.size(), kIdentitySpan - head_.size());
  head_.insert(head_.end(), bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(head));
  if (tail_.empty()) tail_.resize(kIdentitySpan);
  // Only the last kIdentitySpan bytes of `bytes` can end up in the tail.
  const size_t skip = bytes.size() > kIdentitySpan ? bytes.size() - kIdentitySpan : 0;
  const uint64_t before = out_->size() - bytes.size();  // the file's length before these bytes
  uint64_t pos = before + skip;
  for (size_t i = skip; i < bytes.size();) {
    const size_t at = static_cast<size_t>(pos % kIdentitySpan);
    const size_t n = std::min(bytes.size() - i, kIdentitySpan - at);
    std::memcpy(tail_.data() + at, bytes.data() + i, n);
    i += n;
    pos += n;
  }
  return Status::Ok();
}

Status StreamWriter::CheckFrame(uint64_t offset, uint64_t length) {
  if (finished_) return Status::InvalidArgument(path_ + ": stream already finished");
  if (in_data_) {
    return Status::InvalidArgument(path_ + ": data frame at " + std::to_string(frame_start_) +
                                   " is missing " + std::to_string(frame_length_ - frame_done_) +
                                   " bytes");
  }
  if (offset < prev_end_ || offset > UINT64_MAX - length || offset + length > meta_.virtual_size) {
    return Status::InvalidArgument(path_ + ": frame [" + std::to_string(offset) + ", +" +
                                   std::to_string(length) + ") is out of order or past the disk");
  }
  prev_end_ = offset + length;
  return Status::Ok();
}

Status StreamWriter::BeginData(uint64_t offset, uint64_t length) {
  BFS_RETURN_IF_ERROR(CheckFrame(offset, length));
  BFS_RETURN_IF_ERROR(Write(EncodeFrameHeader({FrameKind::kData, offset, length})));
  in_data_ = true;
  frame_start_ = offset;
  frame_length_ = length;
  frame_done_ = 0;
  frame_chunks_ = 0;
  data_total_ += length;
  chunk_ = Chunk{};
  chunk_.frame = frames_++;
  chunk_.offset = offset;
  chunk_.file_offset = file_pos_;
  chunk_.compressed = index_.compressed;
  chunk_.has_checksum = true;
  XXH3_64bits_reset(hash_.get());
  if (index_.compressed) trailer_.emplace_back();
  if (length == 0) return Append({});
  return Status::Ok();
}

Status StreamWriter::Append(std::span<const uint8_t> bytes) {
  if (!in_data_ || bytes.size() > frame_length_ - frame_done_) {
    return Status::InvalidArgument(path_ + ": Append beyond the current data frame");
  }
  BFS_RETURN_IF_ERROR(index_.compressed ? AppendCompressed(bytes) : AppendRaw(bytes));
  if (frame_done_ < frame_length_) return Status::Ok();
  in_data_ = false;
  if (index_.compressed) {
    TrailerEntry& e = trailer_.back();
    // Counted, not read off chunk_sizes: those of chunks still compressing come later.
    e.split = frame_chunks_ > 1 || frame_length_ >= kNbdMaxRequest;
    if (frame_chunks_ == 0) e.chunk_sizes.push_back(0);
  }
  return Write(AsBytes(kTerminator));
}

// Large spans are summed (adler32) on a helper thread while this one hashes and writes them:
// the adler32 would otherwise cost as much as the write itself.
Status StreamWriter::AppendRaw(std::span<const uint8_t> bytes) {
  if (bytes.size() < kBufferSize / 4) return HashAndWriteRaw(bytes, false);
  adler_.Start(bytes);
  Status s = HashAndWriteRaw(bytes, true);
  adler_.Wait();
  return s;
}

Status StreamWriter::HashAndWriteRaw(std::span<const uint8_t> bytes, bool summed) {
  const uint64_t granule = options_.checksum_granule;
  while (!bytes.empty()) {
    uint64_t pos = frame_start_ + frame_done_;
    uint64_t chunk_end = std::min(frame_start_ + frame_length_, (pos / granule + 1) * granule);
    size_t n = static_cast<size_t>(std::min<uint64_t>(bytes.size(), chunk_end - pos));
    XXH3_64bits_update(hash_.get(), bytes.data(), n);
    BFS_RETURN_IF_ERROR(Write(bytes.first(n), summed));
    frame_done_ += n;
    bytes = bytes.subspan(n);
    if (frame_start_ + frame_done_ == chunk_end) BFS_RETURN_IF_ERROR(CloseRawChunk());
  }
  return Status::Ok();
}

Status StreamWriter::CloseRawChunk() {
  chunk_.length = frame_start_ + frame_done_ - chunk_.offset;
  chunk_.stored_size = chunk_.length;
  chunk_.checksum = XXH3_64bits_digest(hash_.get());
  index_.chunks.push_back(chunk_);
  chunk_.offset += chunk_.length;
  chunk_.file_offset += chunk_.length;
  XXH3_64bits_reset(hash_.get());
  return Status::Ok();
}

Status StreamWriter::AppendCompressed(std::span<const uint8_t> bytes) {
  while (!bytes.empty()) {
    // Frames shorter than kNbdMaxRequest must be one lz4 frame (virtnbdrestore 1.9.15 reads
    // them in one piece); longer ones are split into chunks of compressed_chunk bytes.
    const uint64_t left = frame_length_ - (frame_done_ - pending_.size());
    uint64_t chunk_size =
        frame_length_ < kNbdMaxRequest ? left : std::min(options_.compressed_chunk, left);
    size_t n = static_cast<size_t>(std::min<uint64_t>(bytes.size(), chunk_size - pending_.size()));
    pending_.insert(pending_.end(), bytes.begin(), bytes.begin() + n);
    frame_done_ += n;
    bytes = bytes.subspan(n);
    if (pending_.size() == chunk_size) BFS_RETURN_IF_ERROR(CompressPending());
  }
  return Status::Ok();
}

Status StreamWriter::CompressPending() {
  frame_chunks_++;
  if (options_.compress_threads > 1) return CompressPendingInBackground();
  Lz4Bytes packed = Lz4CompressChunk(pending_, *options_.lz4_level);
  chunk_.length = pending_.size();
  chunk_.stored_size = packed.size();
  chunk_.file_offset = file_pos_;
  chunk_.checksum = Xxh3(pending_);
  index_.chunks.push_back(chunk_);
  trailer_.back().chunk_sizes.push_back(packed.size());
  chunk_.offset += chunk_.length;
  pending_.clear();
  return Write(packed);
}

// Compresses (and hashes) the pending chunk on a worker thread while the caller goes on
// reading; at most compress_threads chunks are in flight, then the oldest is written.
Status StreamWriter::CompressPendingInBackground() {
  struct Packed {
    Lz4Bytes bytes;
    uint64_t checksum;
  };
  const int level = *options_.lz4_level;
  // A thread per small chunk (a 64 KiB frame of a scattered inc) costs more than compressing
  // it: those are compressed when their turn to be written comes, on this thread.
  const auto policy =
      pending_.size() >= kBackgroundCompressMin ? std::launch::async : std::launch::deferred;
  std::shared_future<Packed> packed = std::async(policy, [data = std::move(pending_), level] {
                                        return Packed{Lz4CompressChunk(data, level), Xxh3(data)};
                                      }).share();
  pending_ = {};
  Chunk c = chunk_;
  c.length = frame_done_ - (c.offset - frame_start_);
  const size_t trailer = trailer_.size() - 1;
  chunk_.offset += c.length;
  queue_.push_back({true, [this, packed, c, trailer]() mutable {
                      const Packed& p = packed.get();
                      c.stored_size = p.bytes.size();
                      c.file_offset = file_pos_;
                      c.checksum = p.checksum;
                      index_.chunks.push_back(c);
                      trailer_[trailer].chunk_sizes.push_back(p.bytes.size());
                      return WriteNow(p.bytes);
                    }});
  compressing_++;
  while (compressing_ >= options_.compress_threads) BFS_RETURN_IF_ERROR(RunFront());
  return io_error_;
}

Status StreamWriter::AddData(uint64_t offset, std::span<const uint8_t> bytes) {
  BFS_RETURN_IF_ERROR(BeginData(offset, bytes.size()));
  if (bytes.empty()) return Status::Ok();
  return Append(bytes);
}

Status StreamWriter::AddZero(uint64_t offset, uint64_t length) {
  BFS_RETURN_IF_ERROR(CheckFrame(offset, length));
  if (length > 0) {
    Chunk c;
    c.kind = ChunkKind::kZero;
    c.offset = offset;
    c.length = length;
    c.frame = frames_;
    if (queue_.empty()) {
      index_.chunks.push_back(c);
    } else {
      queue_.push_back({false, [this, c] {
                          index_.chunks.push_back(c);
                          return Status::Ok();
                        }});
    }
  }
  ++frames_;
  return Write(EncodeFrameHeader({FrameKind::kZero, offset, length}));
}

Status StreamWriter::WriteTail() {
  BFS_RETURN_IF_ERROR(Drain());  // the trailer lists every chunk's size
  BFS_RETURN_IF_ERROR(Write(EncodeFrameHeader({FrameKind::kStop, 0, 0})));
  if (index_.compressed) {
    const std::string json = EncodeTrailer(trailer_);
    BFS_RETURN_IF_ERROR(Write(AsBytes(json)));
    BFS_RETURN_IF_ERROR(Write(AsBytes(kTerminator)));
    BFS_RETURN_IF_ERROR(Write(EncodeFrameHeader({FrameKind::kComp, 0, json.size()})));
  }
  return Flush();
}

Status StreamWriter::Finish(const CommitCheck& may_commit) {
  if (finished_) return Status::InvalidArgument(path_ + ": stream already finished");
  Status s = io_error_.ok() ? CheckFrame(prev_end_, 0) : io_error_;
  if (s.ok() && data_total_ != meta_.data_size) {
    s = Status::InvalidArgument(path_ + ": data frames hold " + std::to_string(data_total_) +
                                " bytes but the metadata announced " +
                                std::to_string(meta_.data_size));
  }
  if (s.ok()) s = WriteTail();
  if (s.ok()) {
    Result<DataFileIdentity> id = IdentifyDataFile(EndsSource(head_, tail_, out_->size(), path_));
    s = id.status();
    if (s.ok()) index_.identity = *id;
  }
  PutOptions put;
  put.durable = options_.durable;
  if (s.ok()) s = out_->Flush();  // a data file that cannot be stored leaves no sidecars
  if (s.ok() && may_commit) s = may_commit();
  if (s.ok()) s = storage_.Put(name_ + ".idx", EncodeIndex(index_), put);
  if (s.ok()) s = WriteChecksumFile(storage_, name_ + ".chksum", adler_.value(), options_.durable);
  if (s.ok()) s = out_->Commit();  // the data file becomes visible: the commit point
  if (!s.ok()) {
    Abandon();
    return s;
  }
  finished_ = true;
  out_.reset();
  return Status::Ok();
}

}  // namespace backupfs
