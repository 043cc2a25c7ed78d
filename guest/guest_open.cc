// Which reader serves which of blkid's filesystem types.
#include <array>
#include <string_view>

#include "guest/guest_fs.h"

namespace backupfs {
namespace {

constexpr std::array<std::string_view, 4> kExtTypes = {"ext2", "ext3", "ext4", "ext4dev"};

bool IsExt(const std::string& type) {
  for (std::string_view t : kExtTypes) {
    if (type == t) return true;
  }
  return false;
}

}  // namespace

bool GuestFsReadable(const std::string& blkid_type) {
  return IsExt(blkid_type) || blkid_type == "ntfs";
}

Result<std::unique_ptr<GuestFs>> OpenGuestFs(const std::string& blkid_type,
                                             std::shared_ptr<const ByteSource> device) {
  if (IsExt(blkid_type)) return OpenExtFs(std::move(device));
  if (blkid_type == "ntfs") return OpenNtfsFs(std::move(device));
  return Status::FailedPrecondition(
      device->name() + ": " +
      (blkid_type.empty() ? "no filesystem recognised" : blkid_type + " is not readable here") +
      "; use its partition file instead");
}

}  // namespace backupfs
