// What backupfs-capture reads from libvirt's XML documents (domain, checkpoint, backup job),
// parsed with libxml2.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "stream/status.h"

namespace backupfs {

struct DomainDisk {
  std::string target;  // <target dev='vda'>: the disk's name in backups and NBD exports
  std::string source;  // <source file=...> (or dev=/name= for block and network disks)
  std::string format;  // <driver type='qcow2'>, "raw", ... ("" when absent)
  std::string device;  // "disk" or "lun" (cdrom and floppy are never listed)
  std::string type;    // <disk type=...>: "file", "block", "network", "volume"
  // The iothread serving it ("" for QEMU's main loop): <driver iothread=...>, or for a SCSI
  // disk its controller's.
  std::string iothread;
};

// The domain's backup candidates in document order: every <devices><disk> except cdrom and
// floppy. Malformed XML, or a disk without a target dev, is InvalidArgument naming `domain`.
Result<std::vector<DomainDisk>> ParseDomainDisks(std::string_view xml, const std::string& domain);

// A file the domain boots from, saved beside the backup as virtnbdbackup does.
struct BootFile {
  std::string setting;  // "loader", "nvram", "kernel", "initrd"
  std::string path;     // on the host
};

// <os><loader>, <nvram>, <kernel>, <initrd> that name a file, in that order.
Result<std::vector<BootFile>> ParseBootFiles(std::string_view xml, const std::string& domain);

// Whether the domain has a guest agent channel (org.qemu.guest_agent.0); whether an agent
// answers on it is another matter.
Result<bool> HasGuestAgentChannel(std::string_view xml, const std::string& domain);

// <domain><name> (of a saved vmconfig.*.xml, say); `what` names the document in errors.
Result<std::string> ParseDomainName(std::string_view xml, const std::string& what);

// A <domaincheckpoint> (virDomainCheckpointGetXMLDesc, or a saved checkpoints/*.xml).
struct CheckpointInfo {
  std::string creation_time;  // <creationTime>; "" when absent
  std::string parent;         // <parent><name>; "" for the first of libvirt's checkpoints
  // The sum of <disks><disk size=...>: the bytes changed since the checkpoint, present with
  // VIR_DOMAIN_CHECKPOINT_XML_SIZE.
  uint64_t changed_bytes = 0;
};
Result<CheckpointInfo> ParseCheckpointXml(std::string_view xml, const std::string& what);

// A running <domainbackup> job (virDomainBackupGetXMLDesc).
struct BackupJobInfo {
  std::string socket;                      // <server socket=...>; "" when not on a unix socket
  std::vector<std::string> scratch_files;  // <disks><disk><scratch file=...>
};
Result<BackupJobInfo> ParseBackupJobXml(std::string_view xml, const std::string& what);

}  // namespace backupfs
