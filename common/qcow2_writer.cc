#include "common/qcow2_writer.h"

#include <endian.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace backupfs {
namespace {

constexpr uint64_t kCopied = 1ull << 63;  // QCOW_OFLAG_COPIED: refcount is exactly 1
constexpr uint32_t kMagic = 0x514649fb;   // "QFI\xfb"
constexpr uint32_t kHeaderLength = 104;   // version 3 header without compression type
constexpr uint32_t kRefcountOrder = 4;    // 16-bit refcounts

uint64_t CeilDiv(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

template <typename T>
void PutBig(uint8_t* at, T v) {
  for (size_t i = 0; i < sizeof(T); ++i)
    at[i] = static_cast<uint8_t>(v >> (8 * (sizeof(T) - 1 - i)));
}

// "key=value" -> value for `key`, or nullptr.
const char* Value(const std::string& option, const std::string& key) {
  return option.size() > key.size() && option.compare(0, key.size() + 1, key + "=") == 0
             ? option.c_str() + key.size() + 1
             : nullptr;
}

bool ClusterBits(const char* v, uint32_t* bits) {
  char* end = nullptr;
  const unsigned long long n = std::strtoull(v, &end, 10);
  if (*end != '\0') return false;
  for (uint32_t b = 9; b <= 21; ++b) {
    if (n == (1ull << b)) {
      *bits = b;
      return true;
    }
  }
  return false;
}

}  // namespace

bool Qcow2WriterFits(const std::vector<std::string>& create_options, Qcow2Layout* layout) {
  Qcow2Layout l;
  for (const std::string& o : create_options) {
    if (const char* v = Value(o, "cluster_size")) {
      if (!ClusterBits(v, &l.cluster_bits)) return false;
    } else if (const char* c = Value(o, "compat")) {
      if (std::strcmp(c, "1.1") != 0 && std::strcmp(c, "v3") != 0) return false;
    } else if (const char* t = Value(o, "compression_type")) {
      if (std::strcmp(t, "zlib") != 0) return false;
    } else if (const char* r = Value(o, "refcount_bits")) {
      if (std::strcmp(r, "16") != 0) return false;
    } else if (o == "lazy_refcounts=on") {
      l.lazy_refcounts = true;
    } else {
      return false;  // extended_l2, data_file, preallocation, anything new: qemu-img's
    }
  }
  *layout = l;
  return true;
}

Qcow2Writer::Qcow2Writer(std::string path, UniqueFd fd, uint64_t size, const Qcow2Layout& layout)
    : path_(std::move(path)),
      fd_(std::move(fd)),
      size_(size),
      layout_(layout),
      cluster_(1ull << layout.cluster_bits),
      l2_entries_(cluster_ / 8),
      l1_size_(CeilDiv(CeilDiv(size, cluster_), l2_entries_)) {
  MutexLock lock(mu_);
  l2_.resize(l1_size_);
}

Result<std::unique_ptr<Qcow2Writer>> Qcow2Writer::Create(const std::string& path, uint64_t size,
                                                         const Qcow2Layout& layout) {
  if (layout.cluster_bits < 9 || layout.cluster_bits > 21) {
    return Status::InvalidArgument("qcow2 cluster size 2^" + std::to_string(layout.cluster_bits) +
                                   " is out of range");
  }
  if (size % 512 != 0) {
    return Status::InvalidArgument(path + ": a qcow2 image's size must be a multiple of 512, not " +
                                   std::to_string(size));
  }
  const std::string partial = path + ".partial";
  UniqueFd fd(open(partial.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd.valid()) return Status::FromErrno("cannot create " + partial, errno);
  return std::unique_ptr<Qcow2Writer>(new Qcow2Writer(path, std::move(fd), size, layout));
}

Qcow2Writer::~Qcow2Writer() {
  if (!finished_) unlink(partial().c_str());
}

Status Qcow2Writer::Write(unsigned, uint64_t offset, std::span<const uint8_t> bytes) {
  const uint64_t end = offset + bytes.size();
  if (offset % cluster_ != 0 || end > size_ || (end % cluster_ != 0 && end != size_)) {
    return Status::InvalidArgument(partial() + ": write of " + std::to_string(bytes.size()) +
                                   " bytes at " + std::to_string(offset) +
                                   " does not cover whole clusters");
  }
  const uint64_t clusters = CeilDiv(bytes.size(), cluster_);
  const uint64_t host = next_cluster_.fetch_add(clusters);
  BFS_RETURN_IF_ERROR(PwriteAll(fd_.get(), bytes, host * cluster_, partial()));
  if (const uint64_t pad = clusters * cluster_ - bytes.size(); pad > 0) {
    // The last cluster of an image whose size is not a multiple: the file holds it whole.
    const std::vector<uint8_t> zeros(pad);
    BFS_RETURN_IF_ERROR(PwriteAll(fd_.get(), zeros, host * cluster_ + bytes.size(), partial()));
  }
  return MapClusters(offset / cluster_, clusters, host);
}

Status Qcow2Writer::MapClusters(uint64_t first_virtual, uint64_t count, uint64_t first_host) {
  MutexLock lock(mu_);
  for (uint64_t i = 0; i < count; ++i) {
    const uint64_t v = first_virtual + i;
    std::unique_ptr<uint64_t[]>& l2 = l2_[v / l2_entries_];
    if (!l2) l2.reset(new uint64_t[l2_entries_]());
    uint64_t& entry = l2[v % l2_entries_];
    if (entry != 0) {
      return Status::InvalidArgument(partial() + ": cluster at " + std::to_string(v * cluster_) +
                                     " written twice");
    }
    entry = (first_host + i) * cluster_ | kCopied;
  }
  return Status::Ok();
}

Status Qcow2Writer::Zero(unsigned, uint64_t, uint64_t) {
  // A new image reads as zeros: the copier never asks (zeroed_at_start()).
  return Status::Ok();
}

Status Qcow2Writer::WriteMetadata() {
  MutexLock lock(mu_);
  const uint64_t data_end = next_cluster_.load();
  // L2 tables right after the data, then the L1 table.
  std::vector<uint64_t> l1(l1_size_, 0);
  uint64_t at = data_end;
  std::vector<uint8_t> buf(cluster_);
  for (uint64_t i = 0; i < l1_size_; ++i) {
    if (!l2_[i]) continue;
    for (uint64_t e = 0; e < l2_entries_; ++e) PutBig(&buf[e * 8], l2_[i][e]);
    BFS_RETURN_IF_ERROR(PwriteAll(fd_.get(), buf, at * cluster_, partial()));
    l1[i] = at * cluster_ | kCopied;
    ++at;
  }
  const uint64_t l1_offset = at * cluster_;
  const uint64_t l1_clusters = CeilDiv(std::max<uint64_t>(l1_size_, 1) * 8, cluster_);
  std::vector<uint8_t> l1_bytes(l1_clusters * cluster_, 0);
  for (uint64_t i = 0; i < l1_size_; ++i) PutBig(&l1_bytes[i * 8], l1[i]);
  BFS_RETURN_IF_ERROR(PwriteAll(fd_.get(), l1_bytes, l1_offset, partial()));
  at += l1_clusters;
  // Refcount blocks and the table after them; both count themselves, so iterate to a fixpoint.
  const uint64_t per_block = cluster_ / 2;
  uint64_t blocks = 0, table = 0;
  for (;;) {
    const uint64_t total = at + blocks + table;
    const uint64_t need_blocks = CeilDiv(total, per_block);
    const uint64_t need_table = CeilDiv(need_blocks * 8, cluster_);
    if (need_blocks == blocks && need_table == table) break;
    blocks = need_blocks;
    table = need_table;
  }
  const uint64_t total = at + blocks + table;
  std::vector<uint8_t> refcounts(blocks * cluster_, 0);
  for (uint64_t c = 0; c < total; ++c) PutBig<uint16_t>(&refcounts[c * 2], 1);
  BFS_RETURN_IF_ERROR(PwriteAll(fd_.get(), refcounts, at * cluster_, partial()));
  std::vector<uint8_t> table_bytes(table * cluster_, 0);
  for (uint64_t b = 0; b < blocks; ++b) PutBig(&table_bytes[b * 8], (at + b) * cluster_);
  const uint64_t table_offset = (at + blocks) * cluster_;
  BFS_RETURN_IF_ERROR(PwriteAll(fd_.get(), table_bytes, table_offset, partial()));
  // The header last: until it is there, the file is no qcow2 image at all.
  uint8_t h[kHeaderLength + 8] = {};
  PutBig<uint32_t>(h + 0, kMagic);
  PutBig<uint32_t>(h + 4, 3);
  PutBig<uint32_t>(h + 20, layout_.cluster_bits);
  PutBig<uint64_t>(h + 24, size_);
  PutBig<uint32_t>(h + 36, static_cast<uint32_t>(l1_size_));
  PutBig<uint64_t>(h + 40, l1_offset);
  PutBig<uint64_t>(h + 48, table_offset);
  PutBig<uint32_t>(h + 56, static_cast<uint32_t>(table));
  PutBig<uint64_t>(h + 80, layout_.lazy_refcounts ? 1 : 0);  // compatible: lazy refcounts
  PutBig<uint32_t>(h + 96, kRefcountOrder);
  PutBig<uint32_t>(h + 100, kHeaderLength);
  // h[104..112): the end-of-extensions marker (type 0, length 0).
  return PwriteAll(fd_.get(), std::span<const uint8_t>(h, sizeof h), 0, partial());
}

Status Qcow2Writer::Finish() {
  BFS_RETURN_IF_ERROR(WriteMetadata());
  BFS_RETURN_IF_ERROR(FsyncFile(fd_.get(), partial()));
  fd_.reset();
  if (rename(partial().c_str(), path_.c_str()) != 0) {
    return Status::FromErrno("cannot rename " + partial(), errno);
  }
  finished_ = true;
  return FsyncParentDir(path_);
}

}  // namespace backupfs
