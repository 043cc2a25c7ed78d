// What a restore will write, decided before anything is written: the restore point, each
// disk's chain and target, the domain XML, the boot files. Every refusal (an unknown point, a
// name that would escape the output directory, an existing file without --force) happens here,
// so a refused restore leaves the output directory as it was.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backupfs/chain.h"
#include "common/host.h"
#include "restore/options.h"
#include "stream/status.h"

namespace backupfs {

struct DiskPlan {
  std::string disk;    // target dev
  DiskChain chain;     // full (or copy) first
  std::string target;  // the image to write: OUTDIR/<name>, or a block device
  std::string format;  // "qcow2" or "raw"
  bool block_device = false;
  // Files of the saveset (names in RestorePlan::saveset), "" when there is none:
  std::string qcow_json;  // `qemu-img info` of the backed-up image
  std::string raw_copy;   // -r: a raw image data file to copy as it is ("" = restore the chain)
};

struct BootFilePlan {
  std::string setting;   // loader, nvram, kernel, initrd
  std::string original;  // the path in the domain XML
  std::string saved;     // its copy: a file of the saveset (RestorePlan::saveset)
  std::string target;    // OUTDIR/<basename>
};

struct RestorePlan {
  std::shared_ptr<Storage> saveset;  // where the saveset's files named below are read from
  std::string point;                 // restore point name (checkpoint, diff id, copy)
  std::string id;                    // the suffix of its per-point files
  // The domain XML used, for messages: a file of the saveset as its storage describes it (a
  // path or an s3:// URL), or the file -C names on this machine; "" when there is none.
  std::string vmconfig_path;
  std::string vmconfig_xml;    // its text
  std::string config_target;   // OUTDIR/<-C name>
  std::string autostart_file;  // autostart.<id> when the domain started at boot ("" when not)
  std::vector<DiskPlan> disks;
  std::vector<BootFilePlan> boot_files;
  std::vector<std::string> warnings;  // disks not restored, files not found, ...
};

// The saveset `input` names: `opened` when the caller opened it (a directory or a store),
// else the local directory `input`.
std::shared_ptr<Storage> SavesetStorage(const std::shared_ptr<Storage>& opened,
                                        const std::string& input);
inline std::shared_ptr<Storage> SavesetStorage(const RestoreOptions& o) {
  return SavesetStorage(o.saveset, o.input);
}

// Copies file `name` of `saveset` (a boot file) to `target` on `host`, mode 0600, written
// whole or not at all: streamed from its path when the saveset is a directory here, else read
// through the storage (a kernel or initrd is a few tens of MiB).
Status PutSavedFile(Host& host, const Storage& saveset, const std::string& name,
                    const std::string& target);

// Plans a restore of `model` (a loaded saveset) as `options` ask; the saveset's own files
// (domain XML, qcow2 settings, boot files) are looked for in model.storage. `output_host`: the
// remote host the output directory is on (its files are checked there), nullptr for this machine.
Result<RestorePlan> PlanRestore(const SavesetModel& model, const RestoreOptions& options,
                                Host* output_host = nullptr);

// -s: the chain named by data file names of the saveset (oldest first, a full or copy
// first; each incremental's parent is the checkpoint before it).
Result<DiskChain> ChainFromSequence(const RestoreOptions& options, const OpenOptions& open);

// -s: a plan for the one disk of `chain` (no config, no boot files, as virtnbdrestore).
Result<RestorePlan> PlanSequence(DiskChain chain, const RestoreOptions& options,
                                 Host* output_host = nullptr);

}  // namespace backupfs
