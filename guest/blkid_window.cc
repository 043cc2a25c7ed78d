#include "guest/blkid_window.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <vector>

namespace backupfs {
namespace {

constexpr uint64_t kGranule = 64 * 1024;
// At most this much of a disk is copied for one probe (a hostile table naming hundreds of
// partitions would otherwise pull in a MiB or two for each).
constexpr uint64_t kWindowBudget = 128 * kMiB;
constexpr uint64_t kSector = 512;
// Extended boot records followed in one chain; blkid itself stops well before.
constexpr int kMaxEbrHops = 1024;

uint16_t Le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | p[1] << 8); }
uint32_t Le32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}
uint64_t Le64(const uint8_t* p) { return uint64_t{Le32(p)} | uint64_t{Le32(p + 4)} << 32; }

// Each byte equals the next and the first is zero (memcmp: fast even when instrumented).
bool AllZero(std::span<const uint8_t> bytes) {
  return bytes.empty() ||
         (bytes[0] == 0 && std::memcmp(bytes.data(), bytes.data() + 1, bytes.size() - 1) == 0);
}

}  // namespace

OwnedFd::~OwnedFd() {
  if (fd_ >= 0) close(fd_);
}

Result<BlkidWindow> BlkidWindow::Create(const ByteSource& disk) {
  OwnedFd fd(memfd_create("backupfs-blkid", MFD_CLOEXEC));
  if (fd.get() < 0) return Status::FromErrno(disk.name() + ": memfd_create for blkid", errno);
  if (ftruncate(fd.get(), static_cast<off_t>(disk.size())) != 0) {
    return Status::FromErrno(
        disk.name() + ": ftruncate of the blkid memfd to " + std::to_string(disk.size()), errno);
  }
  return BlkidWindow(disk, std::move(fd));
}

Status BlkidWindow::CopyGranule(uint64_t index) {
  const uint64_t offset = index * kGranule;
  std::vector<uint8_t> bytes(std::min(kGranule, disk_->size() - offset));
  BFS_RETURN_IF_ERROR(disk_->ReadAt(offset, bytes));
  if (AllZero(bytes)) return Status::Ok();  // the memfd already reads zeros there
  for (size_t done = 0; done < bytes.size();) {
    const ssize_t n = pwrite(fd_.get(), bytes.data() + done, bytes.size() - done,
                             static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return Status::FromErrno(
          disk_->name() + ": copying offset " + std::to_string(offset) + " into the blkid memfd",
          n < 0 ? errno : ENOSPC);
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Result<bool> BlkidWindow::Add(uint64_t offset, uint64_t length) {
  const uint64_t size = disk_->size();
  if (length == 0 || offset >= size) return false;
  const uint64_t end = offset + std::min(length, size - offset);
  bool added = false;
  for (uint64_t g = offset / kGranule; g <= (end - 1) / kGranule; ++g) {
    if (copied_.count(g)) continue;
    if (copied_.size() >= kWindowBudget / kGranule) {
      exhausted_ = true;
      return added;
    }
    BFS_RETURN_IF_ERROR(CopyGranule(g));
    copied_.insert(g);
    added = true;
  }
  return added;
}

Status BlkidWindow::Blank(uint64_t offset, uint64_t length) {
  // A hole punched in the memfd reads as zeros and frees what was copied there.
  if (fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                static_cast<off_t>(length)) != 0) {
    return Status::FromErrno(
        disk_->name() + ": blanking offset " + std::to_string(offset) + " in the blkid memfd",
        errno);
  }
  return Status::Ok();
}

Status BlkidWindow::Read(uint64_t offset, std::span<uint8_t> out) const {
  for (size_t done = 0; done < out.size();) {
    const ssize_t n =
        pread(fd_.get(), out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return PastEnd(*disk_, offset, out.size());
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Result<BlkidProbe> NewBlkidProbe(const BlkidWindow& window, uint64_t offset, uint64_t size) {
  BlkidProbe probe(blkid_new_probe());
  if (!probe) return Status::IOError(window.disk().name() + ": blkid_new_probe failed");
  if (blkid_probe_set_device(probe.get(), window.fd(), static_cast<blkid_loff_t>(offset),
                             static_cast<blkid_loff_t>(size)) != 0) {
    return Status::IOError(window.disk().name() + ": blkid_probe_set_device at offset " +
                           std::to_string(offset) + " size " + std::to_string(size) + " failed");
  }
  return probe;
}

namespace {

// The entry array a GPT header at byte `header_at` names, when the header looks like one.
Result<bool> AddGptEntryArray(BlkidWindow& window, uint64_t header_at,
                              std::vector<std::string>& problems) {
  std::array<uint8_t, kSector> h{};
  if (header_at + kSector > window.disk().size()) return false;
  BFS_ASSIGN_OR_RETURN(bool added, window.Add(header_at, kSector));
  BFS_RETURN_IF_ERROR(window.Read(header_at, h));
  if (std::string_view(reinterpret_cast<const char*>(h.data()), 8) != "EFI PART") return added;
  const uint64_t entries_lba = Le64(&h[72]);
  const uint64_t bytes = uint64_t{Le32(&h[80])} * Le32(&h[84]);
  if (bytes > kMaxGptEntryArray) {
    // blkid would allocate and read all of it (up to 4 GiB): it never sees this header.
    BFS_RETURN_IF_ERROR(window.Blank(header_at, kSector));
    problems.push_back(window.disk().name() + ": the GPT header at byte " +
                       std::to_string(header_at) + " claims " + std::to_string(Le32(&h[80])) +
                       " entries of " + std::to_string(Le32(&h[84])) + " bytes (" +
                       std::to_string(bytes) + " bytes, more than " +
                       std::to_string(kMaxGptEntryArray) + "); ignored");
    return true;
  }
  if (bytes == 0 || entries_lba > window.disk().size() / kSector) return added;
  BFS_ASSIGN_OR_RETURN(bool array_added, window.Add(entries_lba * kSector, bytes));
  return added || array_added;
}

}  // namespace

Result<bool> AddGptEntryArrays(BlkidWindow& window, std::vector<std::string>& problems) {
  const uint64_t size = window.disk().size();
  if (size < 2 * kSector) return false;
  BFS_ASSIGN_OR_RETURN(bool primary, AddGptEntryArray(window, kSector, problems));
  BFS_ASSIGN_OR_RETURN(bool backup,
                       AddGptEntryArray(window, (size / kSector - 1) * kSector, problems));
  return primary || backup;
}

Result<bool> AddExtendedChain(BlkidWindow& window, uint64_t offset, uint64_t size) {
  std::set<uint64_t> visited;
  bool added = false;
  uint64_t ebr = offset;
  for (int hop = 0; hop < kMaxEbrHops && visited.insert(ebr).second; ++hop) {
    if (ebr + kSector > window.disk().size()) break;
    BFS_ASSIGN_OR_RETURN(bool now, window.Add(ebr, kSector));
    added = added || now;
    std::array<uint8_t, kSector> record{};
    BFS_RETURN_IF_ERROR(window.Read(ebr, record));
    if (record[510] != 0x55 || record[511] != 0xAA) break;
    // The second entry links to the next record, relative to the extended partition's start.
    const uint8_t* link = &record[446 + 16];
    const uint8_t link_type = link[4];
    const uint64_t link_start = uint64_t{Le32(link + 8)} * kSector;
    if ((link_type != 0x05 && link_type != 0x0f && link_type != 0x85) || link_start == 0 ||
        link_start >= size) {
      break;
    }
    ebr = offset + link_start;
  }
  return added;
}

namespace {

Result<bool> AddNtfsMft(BlkidWindow& window, uint64_t offset, uint64_t size) {
  std::array<uint8_t, kSector> boot{};
  if (size < kSector || offset + kSector > window.disk().size()) return false;
  BFS_RETURN_IF_ERROR(window.Read(offset, boot));
  if (std::string_view(reinterpret_cast<const char*>(&boot[3]), 8) != "NTFS    ") return false;
  const uint64_t sector_size = Le16(&boot[11]);
  uint64_t sectors_per_cluster = boot[13];
  if (sectors_per_cluster > 0x80) sectors_per_cluster = uint64_t{1} << std::min(256 - boot[13], 31);
  const uint64_t cluster = sector_size * sectors_per_cluster;
  const auto per_record = static_cast<int8_t>(boot[64]);
  const uint64_t record =
      per_record > 0 ? per_record * cluster : uint64_t{1} << std::min(-per_record, 31);
  const uint64_t mft_lcn = Le64(&boot[48]);
  if (cluster == 0 || cluster > 2 * kMiB || record > 64 * 1024) return false;
  if (mft_lcn > size / cluster) return false;
  const uint64_t mft = mft_lcn * cluster;
  // $MFT itself and $Volume (record 3), where blkid finds the label.
  return window.Add(offset + mft, 4 * record);
}

// The first cluster of a FAT32 root directory, where blkid finds the volume label entry; on a
// large volume the FATs before it reach past the first MiB.
Result<bool> AddFatRootDir(BlkidWindow& window, uint64_t offset, uint64_t size) {
  std::array<uint8_t, kSector> boot{};
  if (size < kSector || offset + kSector > window.disk().size()) return false;
  BFS_RETURN_IF_ERROR(window.Read(offset, boot));
  if (std::string_view(reinterpret_cast<const char*>(&boot[82]), 8) != "FAT32   ") return false;
  const uint64_t sector_size = Le16(&boot[11]);
  const uint64_t cluster = sector_size * boot[13];
  const uint64_t fats = uint64_t{Le16(&boot[14])} + uint64_t{boot[16]} * Le32(&boot[36]);
  const uint64_t root_cluster = Le32(&boot[44]);
  if (cluster == 0 || cluster > 256 * 1024 || root_cluster < 2) return false;
  const uint64_t root = fats * sector_size + (root_cluster - 2) * cluster;
  if (root >= size) return false;
  return window.Add(offset + root, std::min<uint64_t>(cluster, 64 * 1024));
}

// The first cluster of an exFAT root directory (the label entry), at the start of the
// cluster heap, commonly past the first MiB.
Result<bool> AddExfatRootDir(BlkidWindow& window, uint64_t offset, uint64_t size) {
  std::array<uint8_t, kSector> boot{};
  if (size < kSector || offset + kSector > window.disk().size()) return false;
  BFS_RETURN_IF_ERROR(window.Read(offset, boot));
  if (std::string_view(reinterpret_cast<const char*>(&boot[3]), 8) != "EXFAT   ") return false;
  if (boot[108] < 9 || boot[108] > 12 || boot[109] > 16) return false;
  const uint64_t sector_size = uint64_t{1} << boot[108];
  const uint64_t cluster = sector_size << boot[109];
  const uint64_t root_cluster = Le32(&boot[96]);
  if (root_cluster < 2) return false;
  const uint64_t root = uint64_t{Le32(&boot[88])} * sector_size + (root_cluster - 2) * cluster;
  if (root >= size) return false;
  return window.Add(offset + root, std::min<uint64_t>(cluster, 64 * 1024));
}

}  // namespace

Result<bool> AddFilesystemHints(BlkidWindow& window, uint64_t offset, uint64_t size) {
  BFS_ASSIGN_OR_RETURN(bool ntfs, AddNtfsMft(window, offset, size));
  BFS_ASSIGN_OR_RETURN(bool fat, AddFatRootDir(window, offset, size));
  BFS_ASSIGN_OR_RETURN(bool exfat, AddExfatRootDir(window, offset, size));
  return ntfs || fat || exfat;
}

}  // namespace backupfs
