#include "guest/ext_file.h"

#include <algorithm>
#include <cstring>

#include "guest/ext_io.h"

namespace backupfs {

namespace {

std::string InodeName(const std::string& what, ext2_ino_t ino) {
  return what + " inode " + std::to_string(ino);
}

Status MapError(const std::string& what, ext2_ino_t ino, const std::string& step, errcode_t err) {
  return Status::Corruption(InodeName(what, ino) + ": " + step + ": " + ExtErrorText(err));
}

// Appends a run, merging it into the previous one when both are contiguous.
void AddRun(std::vector<ExtRun>& runs, uint64_t logical, uint64_t physical, uint64_t count) {
  if (!runs.empty()) {
    ExtRun& last = runs.back();
    if (last.logical + last.count == logical && last.physical + last.count == physical) {
      last.count += count;
      return;
    }
  }
  runs.push_back(ExtRun{logical, physical, count});
}

struct ExtentHandleCloser {
  void operator()(ext2_extent_handle_t h) const { ext2fs_extent_free(h); }
};

Result<std::vector<ExtRun>> ReadExtents(ext2_filsys fs, ext2_ino_t ino, ext2_inode* inode,
                                        const std::string& what) {
  ext2_extent_handle_t raw = nullptr;
  errcode_t err = ext2fs_extent_open2(fs, ino, inode, &raw);
  if (err) return MapError(what, ino, "cannot open its extent tree", err);
  std::unique_ptr<ext2_extent_handle, ExtentHandleCloser> handle(raw);
  std::vector<ExtRun> runs;
  uint64_t next_logical = 0;  // leaves must come in increasing logical order, never overlapping
  int op = EXT2_EXTENT_ROOT;
  for (size_t steps = 0;; ++steps) {
    if (steps > 2 * kMaxExtRuns) {
      return Status::Corruption(InodeName(what, ino) + ": extent tree has too many entries");
    }
    struct ext2fs_extent e;
    err = ext2fs_extent_get(handle.get(), op, &e);
    if (err == EXT2_ET_EXTENT_NO_NEXT) break;
    if (err) return MapError(what, ino, "cannot read its extent tree", err);
    op = EXT2_EXTENT_NEXT_LEAF;
    if (!(e.e_flags & EXT2_EXTENT_FLAGS_LEAF) || e.e_len == 0) continue;
    if (e.e_lblk < next_logical) {
      return Status::Corruption(InodeName(what, ino) + ": extent at logical block " +
                                std::to_string(e.e_lblk) + " overlaps the one before it");
    }
    next_logical = e.e_lblk + e.e_len;
    if (e.e_flags & EXT2_EXTENT_FLAGS_UNINIT) continue;  // unwritten: reads as zeros
    if (runs.size() >= kMaxExtRuns) {
      return Status::Corruption(InodeName(what, ino) + ": more than " +
                                std::to_string(kMaxExtRuns) + " extents");
    }
    AddRun(runs, e.e_lblk, e.e_pblk, e.e_len);
  }
  return runs;
}

struct IndirectWalk {
  std::vector<ExtRun> runs;
  uint64_t blocks_in_size = 0;
  bool too_many = false;
};

int OnDataBlock(ext2_filsys, blk64_t* blocknr, e2_blkcnt_t blockcnt, blk64_t, int, void* priv) {
  auto* walk = static_cast<IndirectWalk*>(priv);
  if (blockcnt < 0) return 0;
  // Blocks come in logical order: none past the end of the file can be read, stop there.
  if (static_cast<uint64_t>(blockcnt) >= walk->blocks_in_size) return BLOCK_ABORT;
  if (walk->runs.size() >= kMaxExtRuns) {
    walk->too_many = true;
    return BLOCK_ABORT;
  }
  AddRun(walk->runs, static_cast<uint64_t>(blockcnt), *blocknr, 1);
  return 0;
}

Result<std::vector<ExtRun>> ReadIndirect(ext2_filsys fs, ext2_ino_t ino, ext2_inode* inode,
                                         const std::string& what) {
  IndirectWalk walk;
  uint64_t bs = fs->blocksize;
  walk.blocks_in_size = (EXT2_I_SIZE(inode) + bs - 1) / bs;
  errcode_t err = ext2fs_block_iterate3(fs, ino, BLOCK_FLAG_DATA_ONLY | BLOCK_FLAG_READ_ONLY,
                                        nullptr, OnDataBlock, &walk);
  if (err) return MapError(what, ino, "cannot read its block map", err);
  if (walk.too_many) {
    return Status::Corruption(InodeName(what, ino) + ": more than " + std::to_string(kMaxExtRuns) +
                              " block runs");
  }
  return std::move(walk.runs);
}

Status CheckRuns(ext2_filsys fs, ext2_ino_t ino, const std::vector<ExtRun>& runs,
                 const std::string& what) {
  uint64_t first = fs->super->s_first_data_block;
  uint64_t total = ext2fs_blocks_count(fs->super);
  for (const ExtRun& r : runs) {
    if (r.physical < first || r.physical >= total || r.count > total - r.physical ||
        r.logical > (UINT64_MAX / fs->blocksize) - r.count) {
      return Status::Corruption(InodeName(what, ino) + ": logical block " +
                                std::to_string(r.logical) + " maps to blocks " +
                                std::to_string(r.physical) + "+" + std::to_string(r.count) +
                                ", outside the filesystem (" + std::to_string(total) + " blocks)");
    }
  }
  return Status::Ok();
}

}  // namespace

Result<std::vector<ExtRun>> ReadExtBlockMap(ext2_filsys fs, ext2_ino_t ino, ext2_inode* inode,
                                            const std::string& what) {
  auto runs = (inode->i_flags & EXT4_EXTENTS_FL) ? ReadExtents(fs, ino, inode, what)
                                                 : ReadIndirect(fs, ino, inode, what);
  if (!runs.ok()) return runs.status();
  BFS_RETURN_IF_ERROR(CheckRuns(fs, ino, *runs, what));
  return runs;
}

ExtFile::ExtFile(std::shared_ptr<const ByteSource> device, uint32_t block_size, uint64_t size,
                 std::vector<ExtRun> runs, std::string what)
    : device_(std::move(device)),
      block_size_(block_size),
      size_(size),
      runs_(std::move(runs)),
      what_(std::move(what)) {}

ExtFile::ExtFile(std::vector<uint8_t> bytes, std::string what)
    : size_(bytes.size()), inline_(std::move(bytes)), is_inline_(true), what_(std::move(what)) {}

std::vector<ExtRun>::const_iterator ExtFile::RunFrom(uint64_t block) const {
  return std::upper_bound(runs_.begin(), runs_.end(), block,
                          [](uint64_t b, const ExtRun& r) { return b < r.logical + r.count; });
}

Status ExtFile::Read(uint64_t offset, std::span<uint8_t> out) const {
  if (offset > size_ || out.size() > size_ - offset) {
    return Status::InvalidArgument(what_ + ": cannot read " + std::to_string(out.size()) +
                                   " bytes at offset " + std::to_string(offset) +
                                   ": past its size (" + std::to_string(size_) + " bytes)");
  }
  if (is_inline_) {
    if (!out.empty()) std::memcpy(out.data(), inline_.data() + offset, out.size());
    return Status::Ok();
  }
  const uint64_t end = offset + out.size();
  uint64_t pos = offset;
  auto it = RunFrom(pos / block_size_);
  while (pos < end) {
    uint64_t block = pos / block_size_;
    while (it != runs_.end() && it->logical + it->count <= block) ++it;
    uint8_t* dst = out.data() + (pos - offset);
    if (it == runs_.end() || it->logical > block) {
      uint64_t next = it == runs_.end() ? end : std::min(end, it->logical * block_size_);
      std::memset(dst, 0, next - pos);
      pos = next;
      continue;
    }
    uint64_t n = std::min(end, (it->logical + it->count) * block_size_) - pos;
    uint64_t physical = (it->physical + (block - it->logical)) * block_size_ + pos % block_size_;
    Status s = device_->ReadAt(physical, {dst, n});
    if (!s.ok()) return s.WithPrefix(what_ + " at offset " + std::to_string(pos));
    pos += n;
  }
  return Status::Ok();
}

uint64_t ExtFile::NextData(uint64_t offset) const {
  if (offset >= size_) return size_;
  if (is_inline_) return offset;
  auto it = RunFrom(offset / block_size_);
  if (it == runs_.end()) return size_;
  if (it->logical <= offset / block_size_) return offset;
  return std::min(size_, it->logical * block_size_);
}

uint64_t ExtFile::NextHole(uint64_t offset) const {
  if (offset >= size_) return size_;
  if (is_inline_) return size_;
  auto it = RunFrom(offset / block_size_);
  if (it == runs_.end() || it->logical > offset / block_size_) return offset;
  uint64_t end = it->logical + it->count;
  for (++it; it != runs_.end() && it->logical == end; ++it) end += it->count;
  return std::min(size_, end * block_size_);
}

Status GuestFileSource::ReadAt(uint64_t offset, std::span<uint8_t> out) const {
  if (offset > size() || out.size() > size() - offset) return PastEnd(*this, offset, out.size());
  return file_->Read(offset, out);
}

}  // namespace backupfs
