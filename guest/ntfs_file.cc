#include "guest/ntfs_file.h"

#include <algorithm>
#include <vector>

#include "guest/ntfs_node.h"

namespace backupfs::ntfs {
namespace {

constexpr size_t kMaxRuns = 1 << 20;  // runlist elements mapped for SEEK_HOLE

struct Hole {
  uint64_t begin, end;
};

// The holes of a non-resident attribute, from LCN_HOLE runs; for a compressed one only whole
// compression blocks (a compressed block is data followed by a hole in its runlist).
Result<std::vector<Hole>> HolesOf(Volume& v, ntfs_attr* na, uint64_t ino, const LogCapture& log)
    REQUIRES(v.mu) {
  std::vector<Hole> holes;
  if (!NAttrNonResident(na)) return holes;
  errno = 0;
  if (ntfs_attr_map_whole_runlist(na)) return v.Error(ino, "cannot map the runlist", errno, log);
  const uint64_t cluster = v.vol->cluster_size;
  const uint64_t size = static_cast<uint64_t>(na->data_size);
  const bool compressed = (na->data_flags & ATTR_COMPRESSION_MASK) != 0;
  const uint64_t unit = compressed && na->compression_block_size ? na->compression_block_size : 1;
  size_t n = 0;
  for (const runlist_element* rl = na->rl; rl && rl->length > 0; ++rl) {
    if (++n > kMaxRuns)
      return v.Error(ino, "a runlist of more than " + std::to_string(kMaxRuns) + " runs", 0, log);
    if (rl->lcn != LCN_HOLE || rl->vcn < 0) continue;
    uint64_t begin = static_cast<uint64_t>(rl->vcn) * cluster;
    uint64_t end = begin + static_cast<uint64_t>(rl->length) * cluster;
    begin = (begin + unit - 1) / unit * unit;
    end = std::min(end / unit * unit, size);
    if (begin >= end) continue;
    if (!holes.empty() && holes.back().end >= begin)
      holes.back().end = std::max(holes.back().end, end);
    else
      holes.push_back(Hole{begin, end});
  }
  return holes;
}

class NtfsFile final : public GuestFile {
 public:
  NtfsFile(std::shared_ptr<Volume> vol, uint64_t ino, uint64_t size, std::vector<Hole> holes)
      : vol_(std::move(vol)), ino_(ino), size_(size), holes_(std::move(holes)) {}
  uint64_t size() const override { return size_; }

  Status Read(uint64_t offset, std::span<uint8_t> out) const override {
    if (offset > size_ || out.size() > size_ - offset) {
      return Status::InvalidArgument(vol_->name() + ": MFT record " + std::to_string(ino_) +
                                     ": read past the end of the file");
    }
    LogCapture log;
    MutexLock l(vol_->mu);
    BFS_ASSIGN_OR_RETURN(ntfs_attr * na, vol_->DataAttr(ino_, log));
    size_t done = 0;
    while (done < out.size()) {
      errno = 0;
      s64 n = ntfs_attr_pread(na, offset + done, out.size() - done, out.data() + done);
      if (n <= 0) {
        return vol_->Error(ino_,
                           "cannot read " + std::to_string(out.size() - done) +
                               " bytes at offset " + std::to_string(offset + done),
                           errno, log);
      }
      done += n;
    }
    return Status::Ok();
  }

  uint64_t NextData(uint64_t offset) const override {
    for (const Hole& h : holes_) {
      if (offset < h.begin) return offset;
      if (offset < h.end) offset = h.end;
    }
    return std::min(offset, size_);
  }

  uint64_t NextHole(uint64_t offset) const override {
    for (const Hole& h : holes_) {
      if (offset < h.begin) return offset >= size_ ? size_ : h.begin;
      if (offset < h.end) return offset;
    }
    return size_;
  }

 private:
  const std::shared_ptr<Volume> vol_;
  const uint64_t ino_, size_;
  const std::vector<Hole> holes_;  // sorted, disjoint, within [0, size_)
};

}  // namespace

Result<std::shared_ptr<const GuestFile>> OpenFile(const std::shared_ptr<Volume>& v, uint64_t ino,
                                                  const LogCapture& log) {
  {
    BFS_ASSIGN_OR_RETURN(InodePtr ni, v->OpenInode(ino, log));
    if (IsDir(ni.get()) || IsReparse(ni.get())) {
      return Status::InvalidArgument(v->name() + ": MFT record " + std::to_string(ino) +
                                     ": not a regular file");
    }
  }
  BFS_ASSIGN_OR_RETURN(ntfs_attr * na, v->DataAttr(ino, log));
  BFS_ASSIGN_OR_RETURN(std::vector<Hole> holes, HolesOf(*v, na, ino, log));
  return std::shared_ptr<const GuestFile>(
      std::make_shared<NtfsFile>(v, ino, static_cast<uint64_t>(na->data_size), std::move(holes)));
}

}  // namespace backupfs::ntfs
