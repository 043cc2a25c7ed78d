// What backupfs records about an instant-recovery domain, kept in the domain's own <metadata>
// (libvirt stores it with the definition), so that the domain, its saveset mount and its
// overlays are found again by name after our command ends or the host reboots:
//
//   <instant saveset='/backup/web' point='virtnbdbackup.3' workdir='/var/lib/instant/web'
//            mount='/var/lib/instant/web/backupfs-instant.mnt'>
//     <disk target='vda' overlay='.../vda.qcow2' backing='.../virtnbdbackup.3/vda.raw'/>
//     <file path='.../vmconfig.xml'/>            files we wrote, removed when it ends
//     <migration to='/var/lib/libvirt/images' state='running'/>   once one was started
//   </instant>
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "stream/status.h"

namespace backupfs {

inline constexpr char kInstantNamespace[] = "urn:backupfs:instant:1";
inline constexpr char kInstantPrefix[] = "backupfs";
// The mount point's name inside the work directory: also how a leftover mount is told from
// the admin's own backupfs mounts.
inline constexpr char kInstantMountName[] = "backupfs-instant.mnt";

struct InstantDisk {
  std::string target;   // vda
  std::string overlay;  // the qcow2 overlay in the work directory
  std::string backing;  // the point's raw image in the mount
  bool operator==(const InstantDisk&) const = default;
};

struct InstantRecord {
  std::string saveset;
  std::string point;
  std::string workdir;
  std::string mount;
  std::vector<InstantDisk> disks;
  std::vector<std::string> files;  // boot file copies, the domain XML
  std::string migrate_to;          // "" until a migration is started
  std::string migration;           // "running", "failed: ...", "interrupted"
  bool operator==(const InstantRecord&) const = default;
};

std::string InstantRecordXml(const InstantRecord& record);
// Malformed XML, another root element or a missing attribute is Corruption naming `what`.
Result<InstantRecord> ParseInstantRecord(std::string_view xml, const std::string& what);

}  // namespace backupfs
