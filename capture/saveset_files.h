// The files of a saveset directory besides the data streams, as virtnbdbackup writes them,
// and the checks a run makes on the directory before it writes.
#pragma once

#include <libvirt/libvirt.h>

#include <string>
#include <vector>

#include "common/domain_xml.h"
#include "common/host.h"
#include "common/run_log.h"
#include "stream/status.h"

namespace backupfs {

// Refuses a directory that holds another domain's saveset (a `<other>.cpt` file, or vmconfig
// files naming another domain), naming the file that tells.
Status CheckSavesetDomain(const std::string& dir, const std::string& domain);

// Moves every file of the saveset in `dir` (all but `keep`, the run's log file) into a new
// subdirectory `broken-chain.<unixtime>` and returns its path: a chain that cannot continue is
// kept for restores, out of the way of the new one.
Result<std::string> MoveChainAside(const std::string& dir, const std::string& keep);

// Removes a data file and its sidecars (.idx, .chksum); errors ignored (cleanup).
void RemoveDataFile(const std::string& path);

// Whether the qcow2 image on `host` holds a usable persistent bitmap `name` (qemu-img info):
// present and neither in use by a crashed writer nor inconsistent.
Result<bool> ImageHasBitmap(Host& host, const std::string& image, const std::string& name);

// Writes the per-backup files: `vmconfig.<id>.xml`, `<disk>.<id>.qcow.json` per qcow2 disk,
// copies of the boot files (`<name>.<id>`, plain `<name>` for copy), `autostart.<id>` when
// libvirt starts the domain at boot, and for a new checkpoint its XML under the checkpoint
// directory and the updated `<domain>.cpt`. A qcow.json or boot file that cannot be read is a
// warning, as in virtnbdbackup; the others are errors. Images and boot files are read on
// `host`, the domain's hypervisor (over ssh when it is remote).
struct SavesetFiles {
  std::string dir;
  std::string checkpoint_dir;
  std::string domain;
  std::string id;
  Host& host;
  RunLog& log;

  Status SaveAll(virDomainPtr dom, const std::string& domain_xml,
                 const std::vector<DomainDisk>& disks, bool copy, const std::string& checkpoint,
                 const std::vector<std::string>& checkpoint_list) const;

 private:
  void SaveImageInfo(const DomainDisk& disk) const;
  void SaveBootFiles(const std::string& domain_xml, bool copy) const;
};

}  // namespace backupfs
