// The files of a saveset besides the data streams, as virtnbdbackup writes them, and the checks
// a run makes on the saveset before it writes. Everything goes through the saveset's storage
// (stream/storage.h): a local directory or a bucket prefix, the same names either way.
#pragma once

#include <libvirt/libvirt.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "common/domain_xml.h"
#include "common/host.h"
#include "common/run_log.h"
#include "stream/status.h"
#include "stream/storage.h"

namespace backupfs {

// The saveset's top-level entries, none for a store's prefix without objects: what a run
// checks before it writes, listed once (in a store each listing is a request).
Result<std::vector<StoredObject>> ListSavesetTop(const Storage& saveset);

// Refuses a saveset that holds another domain's (a `<other>.cpt` file, or vmconfig files
// naming another domain), naming the file that tells. A saveset with nothing in it yet (a
// store's prefix without objects) is fine. `top` is ListSavesetTop's.
Status CheckSavesetDomain(const Storage& saveset, const std::vector<StoredObject>& top,
                          const std::string& domain);
Status CheckSavesetDomain(const Storage& saveset, const std::string& domain);

// How long a run into a store waits, before it stores anything, so that its files get a later
// second than the newest data file in `top` (ListSavesetTop's) at `now_ns`. A store sets an
// object's time (LastModified; a listing gives milliseconds, HEAD whole seconds), `aws s3 sync`
// makes its whole seconds a synced-down file's mtime, and virtnbdrestore orders a disk's data
// files by mtime: two runs in one second would tie, and it would apply them in directory order. The
// store's clock is not this host's, so the wait is bounded (kMaxWaitForALaterSecond).
std::chrono::nanoseconds WaitForALaterSecond(const std::vector<StoredObject>& top, int64_t now_ns);
inline constexpr std::chrono::seconds kMaxWaitForALaterSecond{2};

// Moves every file of the saveset (all but `keep`, the run's log file) into a new
// subdirectory `broken-chain.<unixtime>` and returns its path or URL: a chain that cannot
// continue is kept for restores, out of the way of the new one. A local subdirectory moves in
// one rename; a store's are moved object by object (a store has no directories to rename).
Result<std::string> MoveChainAside(Storage& saveset, const std::string& keep);

// Removes a data file and its sidecars (.idx, .chksum); errors ignored (cleanup).
void RemoveDataFile(Storage& saveset, const std::string& name);

// Whether the qcow2 image on `host` holds a usable persistent bitmap `name` (qemu-img info):
// present and neither in use by a crashed writer nor inconsistent.
Result<bool> ImageHasBitmap(Host& host, const std::string& image, const std::string& name);

// Writes the per-backup files: `vmconfig.<id>.xml`, `<disk>.<id>.qcow.json` per qcow2 disk,
// copies of the boot files (`<name>.<id>`, plain `<name>` for copy), `autostart.<id>` when
// libvirt starts the domain at boot, and for a new checkpoint its XML in `checkpoints` and the
// updated `<domain>.cpt`, last (the restore point's commit, see backupfs-capture(1)). A
// qcow.json or boot file that cannot be read is a warning, as in virtnbdbackup; the others are
// errors. Images and boot files are read on `host`, the domain's hypervisor (over ssh when it
// is remote).
struct SavesetFiles {
  Storage& saveset;
  Storage& checkpoints;  // `checkpoints/` of the saveset, or -C's directory
  std::string domain;
  std::string id;
  Host& host;
  RunLog& log;
  // The saveset's, asked before the checkpoint list is written: a run that lost it records
  // no restore point (another run may be writing the saveset now).
  const StorageLock& lock;

  Status SaveAll(virDomainPtr dom, const std::string& domain_xml,
                 const std::vector<DomainDisk>& disks, bool copy, const std::string& checkpoint,
                 const std::vector<std::string>& checkpoint_list) const;

 private:
  void SaveImageInfo(const DomainDisk& disk) const;
  void SaveBootFiles(const std::string& domain_xml, bool copy) const;
};

}  // namespace backupfs
