// One backup run of a running libvirt domain into a saveset directory (virtnbdbackup layout).
//
// copy: the whole disk into `<disk>.copy.data`, no checkpoint.
// full: removes this tool's checkpoints (virtnbdbackup.N) from libvirt, starts a pull-mode
// backup job that creates virtnbdbackup.0, writes `<disk>.full.data` for every qcow2 disk.
// inc: creates the next checkpoint with the last one of `<domain>.cpt` as parent and writes
// `<disk>.inc.<checkpoint>.data` holding what changed since (trimmed ranges as zero frames).
// diff: what changed since the last checkpoint, into `<disk>.diff.<unixtime>.data`; creates
// no checkpoint. auto: full when `<domain>.cpt` lists no checkpoint, else inc.
// Beside the data: `vmconfig.<id>.xml`, `<disk>.<id>.qcow.json` (id: the checkpoint, "copy"
// or the unixtime), and for full/inc `checkpoints/<checkpoint>.xml` and the updated
// `<domain>.cpt`. One run per output directory (flock); a leftover `.partial` file and a backup
// job of a killed run are cleaned up first. On failure the job is aborted, the new checkpoint
// deleted and no data file of this run is left looking complete.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "stream/status.h"

namespace backupfs {

enum class CaptureLevel { kCopy, kFull, kInc, kDiff, kAuto };

struct BackupOptions {
  std::string uri;  // "" for qemu:///system
  std::string domain;
  std::string output_dir;
  CaptureLevel level = CaptureLevel::kFull;
  std::optional<int> lz4_level;  // compress when set
  // Receives progress lines (one per step); may be empty.
  std::function<void(const std::string&)> log;
};

struct DiskSummary {
  std::string disk;  // target dev
  std::string file;  // data file written, relative to the output directory
  uint64_t virtual_size = 0;
  uint64_t data_bytes = 0;  // bytes read from the disk
  uint64_t file_bytes = 0;  // bytes of the data file
};

struct BackupSummary {
  CaptureLevel level = CaptureLevel::kFull;  // what ran (never kAuto)
  std::string checkpoint;                    // in the metadata; created only by full and inc
  std::string parent;                        // "" for a full backup
  std::vector<DiskSummary> disks;
};

Result<BackupSummary> RunBackup(const BackupOptions& options);

}  // namespace backupfs
