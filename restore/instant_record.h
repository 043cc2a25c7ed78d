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
//
// A remote instant domain (its hypervisor is another host; the point is served over NBD from
// the backup host) also names what runs on the backup host, so that the later steps stop it:
//
//   <instant ... workdir='/var/lib/instant/web' (on the hypervisor)
//            mount='/var/tmp/backupfs-served.web.1a2b3c/backupfs-served.mnt' (backup host)>
//     <served host='backup1' dir='/var/tmp/backupfs-served.web.1a2b3c' address='192.0.2.7'
//             tls='1' tls-dir='/etc/pki/backupfs'/>
//     <disk target='vda' overlay='/var/lib/instant/web/vda.qcow2'
//           backing='nbd://192.0.2.7:10809/vda' nbd-port='10809' nbdkit-pid='4242'/>
#pragma once

#include <optional>
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
// The same for the mount that serves a remote instant domain's point over NBD.
inline constexpr char kServedMountName[] = "backupfs-served.mnt";

struct InstantDisk {
  std::string target;     // vda
  std::string overlay;    // the qcow2 overlay in the work directory
  std::string backing;    // the point's raw image in the mount; remote: its NBD URI
  unsigned nbd_port = 0;  // remote: where nbdkit serves it
  int nbdkit_pid = 0;     // remote: that nbdkit, on the backup host (0: not started)
  bool operator==(const InstantDisk&) const = default;
};

// What serves a remote instant domain's point: on the backup host `host`, in `dir`, the
// saveset mount and one nbdkit per disk listening on `address`.
struct InstantServed {
  std::string host;     // the backup host's name (gethostname): only there are the pids ours
  std::string dir;      // the mount point's parent, nbdkit's pid files and logs
  std::string address;  // --nbd-serve's ADDR
  bool tls = false;
  std::string tls_dir;  // with tls: nbdkit's x509 files (ca-cert.pem, server-*.pem)
  bool operator==(const InstantServed&) const = default;
};

struct InstantRecord {
  std::string saveset;  // an absolute directory, or a store's address (MountAddress)
  // For a store: the mount's settings (MountStoreOptions), so that instant-resume mounts it
  // again as -a instant did.
  std::string store_options;
  std::string point;
  std::string workdir;
  std::string mount;
  std::vector<InstantDisk> disks;
  std::vector<std::string> files;       // boot file copies, the domain XML
  std::string migrate_to;               // "" until a migration is started
  std::string migration;                // "running", "failed: ...", "interrupted"
  std::optional<InstantServed> served;  // remote instant recovery only
  bool remote() const { return served.has_value(); }
  bool operator==(const InstantRecord&) const = default;
};

std::string InstantRecordXml(const InstantRecord& record);
// Malformed XML, another root element or a missing attribute is Corruption naming `what`.
Result<InstantRecord> ParseInstantRecord(std::string_view xml, const std::string& what);

}  // namespace backupfs
