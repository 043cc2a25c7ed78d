#include "common/block_device_writer.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

namespace backupfs {

bool IsBlockDevice(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 && S_ISBLK(st.st_mode);
}

namespace {

Status CheckSize(int fd, const std::string& device, uint64_t size) {
  uint64_t device_size = 0;
  if (ioctl(fd, BLKGETSIZE64, &device_size) != 0) {
    return Status::FromErrno("cannot read the size of " + device, errno);
  }
  if (device_size < size) {
    return Status::InvalidArgument(device + " holds " + std::to_string(device_size) +
                                   " bytes, the image needs " + std::to_string(size));
  }
  return Status::Ok();
}

}  // namespace

Status CheckBlockDevice(const std::string& path, uint64_t size) {
  if (!IsBlockDevice(path)) return Status::InvalidArgument(path + " is not a block device");
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("cannot open " + path, errno);
  return CheckSize(fd.get(), path, size);
}

Result<std::unique_ptr<BlockDeviceWriter>> BlockDeviceWriter::Open(const std::string& device,
                                                                   uint64_t size) {
  if (!IsBlockDevice(device)) {
    return Status::InvalidArgument(device + " is not a block device");
  }
  UniqueFd fd(open(device.c_str(), O_WRONLY | O_EXCL | O_CLOEXEC));
  if (!fd.valid()) {
    return Status::FromErrno("cannot open " + device + " for writing (mounted or in use?)", errno);
  }
  BFS_RETURN_IF_ERROR(CheckSize(fd.get(), device, size));
  return std::unique_ptr<BlockDeviceWriter>(new BlockDeviceWriter(device, std::move(fd)));
}

Status BlockDeviceWriter::Write(unsigned, uint64_t offset, std::span<const uint8_t> bytes) {
  return PwriteAll(fd_.get(), bytes, offset, device_);
}

Status BlockDeviceWriter::Zero(unsigned, uint64_t offset, uint64_t length) {
  const off_t off = static_cast<off_t>(offset), len = static_cast<off_t>(length);
  // Punching a hole in a block device discards with guaranteed zeroes; zero-range writes
  // zeroes (possibly by unmapping); both fail with EOPNOTSUPP where the device cannot.
  if (fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) == 0) {
    return Status::Ok();
  }
  if (fallocate(fd_.get(), FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off, len) == 0) {
    return Status::Ok();
  }
  uint64_t range[2] = {offset, length};
  if (offset % 512 == 0 && length % 512 == 0 && ioctl(fd_.get(), BLKZEROOUT, range) == 0) {
    return Status::Ok();
  }
  return WriteZeros(offset, length);
}

Status BlockDeviceWriter::WriteZeros(uint64_t offset, uint64_t length) {
  static const std::vector<uint8_t> zeros(1u << 20);
  while (length > 0) {
    const uint64_t n = std::min<uint64_t>(length, zeros.size());
    BFS_RETURN_IF_ERROR(Write(0, offset, std::span(zeros.data(), n)));
    offset += n;
    length -= n;
  }
  return Status::Ok();
}

Status BlockDeviceWriter::Finish() { return FsyncFile(fd_.get(), device_); }

}  // namespace backupfs
