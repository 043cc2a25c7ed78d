#include "guest/ext_io.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <list>
#include <unordered_map>

namespace backupfs {

namespace {

constexpr uint64_t kChunk = 64 * 1024;
constexpr size_t kMaxChunks = 256;  // 16 MiB per channel
constexpr uint64_t kDirectRead = 4 * kChunk;

// The process-wide name -> target registry that lets io_manager->open find its source.
class Registry {
 public:
  static Registry& Get() {
    static Registry* r = new Registry();  // never destroyed: channels may outlive statics
    return *r;
  }
  std::string Add(std::shared_ptr<ExtIoTarget> target) EXCLUDES(mu_) {
    MutexLock l(mu_);
    std::string name = "bfs-ext:" + std::to_string(next_++);
    targets_[name] = std::move(target);
    return name;
  }
  void Remove(const std::string& name) EXCLUDES(mu_) {
    MutexLock l(mu_);
    targets_.erase(name);
  }
  std::shared_ptr<ExtIoTarget> Find(const std::string& name) EXCLUDES(mu_) {
    MutexLock l(mu_);
    auto it = targets_.find(name);
    return it == targets_.end() ? nullptr : it->second;
  }

 private:
  Mutex mu_;
  uint64_t next_ GUARDED_BY(mu_) = 0;
  std::unordered_map<std::string, std::shared_ptr<ExtIoTarget>> targets_ GUARDED_BY(mu_);
};

// 64 KiB-aligned chunks of the source, least recently used dropped first.
class ChunkCache {
 public:
  explicit ChunkCache(const ByteSource& source) : source_(source) {}

  Status Read(uint64_t offset, std::span<uint8_t> out) EXCLUDES(mu_) {
    if (offset > source_.size() || out.size() > source_.size() - offset) {
      return PastEnd(source_, offset, out.size());
    }
    if (out.size() >= kDirectRead) return source_.ReadAt(offset, out);
    MutexLock l(mu_);
    size_t done = 0;
    while (done < out.size()) {
      uint64_t pos = offset + done;
      auto chunk = ChunkAt(pos / kChunk);
      if (!chunk.ok()) return chunk.status();
      uint64_t in_chunk = pos % kChunk;
      size_t n = std::min<uint64_t>(out.size() - done, (*chunk)->size() - in_chunk);
      std::memcpy(out.data() + done, (*chunk)->data() + in_chunk, n);
      done += n;
    }
    return Status::Ok();
  }

 private:
  using Bytes = std::vector<uint8_t>;
  struct Entry {
    uint64_t index;
    Bytes bytes;
  };

  Result<const Bytes*> ChunkAt(uint64_t index) REQUIRES(mu_) {
    auto it = by_index_.find(index);
    if (it != by_index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      return &it->second->bytes;
    }
    uint64_t start = index * kChunk;
    Bytes bytes(std::min(kChunk, source_.size() - start));
    BFS_RETURN_IF_ERROR(source_.ReadAt(start, bytes));
    if (lru_.size() >= kMaxChunks) {
      by_index_.erase(lru_.back().index);
      lru_.pop_back();
    }
    lru_.push_front(Entry{index, std::move(bytes)});
    by_index_[index] = lru_.begin();
    return &lru_.front().bytes;
  }

  const ByteSource& source_;
  Mutex mu_;
  std::list<Entry> lru_ GUARDED_BY(mu_);
  std::unordered_map<uint64_t, std::list<Entry>::iterator> by_index_ GUARDED_BY(mu_);
};

struct ChannelData {
  explicit ChannelData(std::shared_ptr<ExtIoTarget> t)
      : target(std::move(t)), cache(target->source()) {}
  std::shared_ptr<ExtIoTarget> target;
  ChunkCache cache;
};

ChannelData* DataOf(io_channel channel) { return static_cast<ChannelData*>(channel->private_data); }

errcode_t Open(const char* name, int flags, io_channel* out);

errcode_t Close(io_channel channel) {
  if (--channel->refcount > 0) return 0;
  delete DataOf(channel);
  delete[] channel->name;
  delete channel;
  return 0;
}

errcode_t SetBlockSize(io_channel channel, int size) {
  if (size <= 0) return EXT2_ET_INVALID_ARGUMENT;
  channel->block_size = size;
  return 0;
}

// `count` blocks, or -count bytes when negative (libext2fs's convention).
errcode_t ReadBlocks(io_channel channel, unsigned long long block, int count, void* data) {
  uint64_t length = count < 0 ? static_cast<uint64_t>(-static_cast<int64_t>(count))
                              : static_cast<uint64_t>(count) * channel->block_size;
  uint64_t bs = static_cast<uint64_t>(channel->block_size);
  ChannelData* d = DataOf(channel);
  if (block > UINT64_MAX / bs) {
    d->target->SetLastError(d->target->source().name() + ": block " + std::to_string(block) +
                            " is past any offset");
    return EXT2_ET_SHORT_READ;
  }
  Status s = d->cache.Read(block * bs, {static_cast<uint8_t*>(data), length});
  if (s.ok()) return 0;
  d->target->SetLastError(s.message());
  return EXT2_ET_SHORT_READ;
}

errcode_t Read32(io_channel channel, unsigned long block, int count, void* data) {
  return ReadBlocks(channel, block, count, data);
}
errcode_t Write32(io_channel, unsigned long, int, const void*) { return EXT2_ET_RO_FILSYS; }
errcode_t Write64(io_channel, unsigned long long, int, const void*) { return EXT2_ET_RO_FILSYS; }
errcode_t WriteByte(io_channel, unsigned long, int, const void*) { return EXT2_ET_RO_FILSYS; }
errcode_t Flush(io_channel) { return 0; }
errcode_t SetOption(io_channel, const char*, const char*) { return EXT2_ET_INVALID_ARGUMENT; }
errcode_t Discard(io_channel, unsigned long long, unsigned long long) { return EXT2_ET_RO_FILSYS; }
errcode_t Zeroout(io_channel, unsigned long long, unsigned long long) { return EXT2_ET_RO_FILSYS; }
errcode_t Readahead(io_channel, unsigned long long, unsigned long long) { return 0; }

struct_io_manager MakeManager() {
  struct_io_manager m;
  std::memset(&m, 0, sizeof(m));
  m.magic = EXT2_ET_MAGIC_IO_MANAGER;
  m.name = "backupfs ByteSource I/O manager (read-only)";
  m.open = Open;
  m.close = Close;
  m.set_blksize = SetBlockSize;
  m.read_blk = Read32;
  m.write_blk = Write32;
  m.flush = Flush;
  m.write_byte = WriteByte;
  m.set_option = SetOption;
  m.read_blk64 = ReadBlocks;
  m.write_blk64 = Write64;
  m.discard = Discard;
  m.cache_readahead = Readahead;
  m.zeroout = Zeroout;
  return m;
}

struct_io_manager g_manager = MakeManager();

errcode_t Open(const char* name, int flags, io_channel* out) {
  if (name == nullptr || out == nullptr) return EXT2_ET_BAD_DEVICE_NAME;
  if (flags & IO_FLAG_RW) return EXT2_ET_RO_FILSYS;
  std::shared_ptr<ExtIoTarget> target = Registry::Get().Find(name);
  if (!target) return EXT2_ET_BAD_DEVICE_NAME;
  auto* channel = new struct_io_channel;
  std::memset(channel, 0, sizeof(*channel));
  channel->magic = EXT2_ET_MAGIC_IO_CHANNEL;
  channel->manager = &g_manager;
  size_t len = std::strlen(name);
  channel->name = new char[len + 1];
  std::memcpy(channel->name, name, len + 1);
  channel->block_size = 1024;
  channel->refcount = 1;
  channel->private_data = new ChannelData(std::move(target));
  *out = channel;
  return 0;
}

}  // namespace

void ExtIoTarget::SetLastError(std::string text) {
  MutexLock l(mu_);
  last_error_ = std::move(text);
}

std::string ExtIoTarget::TakeLastError() {
  MutexLock l(mu_);
  return std::exchange(last_error_, std::string());
}

ExtIoRegistration::ExtIoRegistration(std::shared_ptr<ExtIoTarget> target)
    : name_(Registry::Get().Add(std::move(target))) {}

ExtIoRegistration::~ExtIoRegistration() { Registry::Get().Remove(name_); }

io_manager ExtIoManager() { return &g_manager; }

std::string ExtErrorText(errcode_t err) {
  const error_table& t = et_ext2_error_table;
  if (err >= t.base && err < t.base + t.n_msgs) return t.msgs[err - t.base];
  if (err > 0 && err < 4096) return std::strerror(static_cast<int>(err));
  return "libext2fs error " + std::to_string(err);
}

BlockOverlaySource::BlockOverlaySource(std::shared_ptr<const ByteSource> base,
                                       std::map<uint64_t, std::vector<uint8_t>> blocks,
                                       uint32_t block_size)
    : base_(std::move(base)), blocks_(std::move(blocks)), block_size_(block_size) {}

Status BlockOverlaySource::ReadAt(uint64_t offset, std::span<uint8_t> out) const {
  if (offset > size() || out.size() > size() - offset) return PastEnd(*this, offset, out.size());
  uint64_t end = offset + out.size();
  uint64_t pos = offset;
  auto it = blocks_.lower_bound(offset / block_size_);
  while (pos < end) {
    // The next replayed block at or after pos, or none within the range.
    while (it != blocks_.end() && (it->first + 1) * block_size_ <= pos) ++it;
    uint64_t next = it == blocks_.end() ? end : std::min(end, it->first * block_size_);
    if (next > pos) {
      BFS_RETURN_IF_ERROR(base_->ReadAt(pos, out.subspan(pos - offset, next - pos)));
      pos = next;
      continue;
    }
    uint64_t in_block = pos - it->first * block_size_;
    uint64_t n = std::min<uint64_t>(end - pos, block_size_ - in_block);
    if (it->second.size() < in_block + n) {
      return Status::Corruption(name() + ": replayed block " + std::to_string(it->first) + " has " +
                                std::to_string(it->second.size()) + " bytes");
    }
    std::memcpy(out.data() + (pos - offset), it->second.data() + in_block, n);
    pos += n;
  }
  return Status::Ok();
}

}  // namespace backupfs
