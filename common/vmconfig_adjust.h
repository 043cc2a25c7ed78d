// Rewrites a saved domain XML so that it describes the restored VM, as virtnbdrestore 2.x's
// --adjust-config does: no <uuid> (libvirt makes a new one), a new <name>, each restored
// disk a plain file at its restored image with the image's format and no backing chain,
// disks that were not restored and cdrom/floppy drives removed, and the boot files
// (loader, nvram, kernel, initrd) pointing at their restored copies.
#pragma once

#include <map>
#include <set>
#include <string>
#include <string_view>

#include "stream/status.h"

namespace backupfs {

struct VmConfigChanges {
  std::string name;  // the new <name>
  struct Disk {
    std::string path;    // absolute path of the restored image (or block device)
    std::string format;  // its format: "qcow2", "raw"
    bool block = false;  // a block device: <disk type='block'><source dev=...>
  };
  std::map<std::string, Disk> disks;              // by target dev; other disks are removed
  std::map<std::string, std::string> boot_files;  // "loader"/"nvram"/... -> new path
};

// The adjusted document. Malformed XML, or a document that is not a <domain>, is
// InvalidArgument naming `what`.
Result<std::string> AdjustDomainXml(std::string_view xml, const VmConfigChanges& changes,
                                    const std::string& what);

// A saved <domaincheckpoint> as libvirt describes the checkpoint once its ancestors are
// deleted (a consolidation folds them): without <parent>. Malformed XML is InvalidArgument
// naming `what`.
Result<std::string> WithoutCheckpointParent(std::string_view xml, const std::string& what);

// virtnbdrestore's default name for a restored domain: "restore_<name>", unless the name
// already starts with "restore".
std::string DefaultRestoredName(const std::string& original);

}  // namespace backupfs
