// One backup run of a libvirt domain into a saveset (virtnbdbackup layout), in a local
// directory or under a bucket prefix: the run writes and reads it only through its storage
// (stream/storage.h), and the same files appear either way.
//
// copy: the whole disk into `<disk>.copy.data`, no checkpoint.
// full: removes this tool's checkpoints (virtnbdbackup.N) from libvirt, starts a pull-mode
// backup job that creates virtnbdbackup.0, writes `<disk>.full.data` for every qcow2 disk.
// inc: creates the next checkpoint with the last one of `<domain>.cpt` as parent and writes
// `<disk>.inc.<checkpoint>.data` holding what changed since (trimmed ranges as zero frames).
// diff: what changed since the last checkpoint, into `<disk>.diff.<unixtime>.data`; creates
// no checkpoint. auto: full when `<domain>.cpt` lists no checkpoint or the last checkpoint's
// bitmap is gone, else inc.
// Shut-off domains are read through qemu-nbd on their image files: copy and full become a
// copy (libvirt cannot create checkpoints for a shut-off domain), inc and diff become a diff
// read from the last checkpoint's persistent bitmap. With start_domain the domain is started
// paused instead, backed up online and destroyed again.
// Beside the data: `vmconfig.<id>.xml`, `<disk>.<id>.qcow.json` (id: the checkpoint, "copy"
// or the unixtime), loader/nvram copies, and for full/inc `checkpoints/<checkpoint>.xml` and
// the updated `<domain>.cpt`. One run per saveset (the storage's writer lock: an flock, or a
// lock object on the store); a leftover `.partial` file and a backup job of a killed run are
// cleaned up first. On failure or cancellation the job is aborted, the new checkpoint deleted
// and no data file of this run is left looking complete. The commit order (a data file after
// its sidecars, then the per-point files, the `.cpt` last) is backupfs-capture(1)'s COMMIT
// POINT.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "capture/saveset_log.h"
#include "common/remote.h"
#include "common/run_log.h"
#include "stream/status.h"
#include "stream/storage.h"

namespace backupfs {

enum class CaptureLevel { kCopy, kFull, kInc, kDiff, kAuto };

const char* CaptureLevelName(CaptureLevel level);

enum class OutputType {
  kStream,  // virtnbdbackup's stream format (default)
  kRaw,     // a sparse raw image per disk, `<disk>.<id>.raw` (copy and full only)
};

struct BackupOptions {
  // The libvirt URI (remote.uri; "" for qemu:///system) and, for another host, how to reach
  // it over ssh and where its NBD export listens.
  RemoteOptions remote;
  std::string domain;
  // The saveset (-o); never null when RunBackup is called, and it outlives the run.
  Storage* saveset = nullptr;
  CaptureLevel level = CaptureLevel::kCopy;
  OutputType type = OutputType::kStream;
  std::optional<int> lz4_level;      // compress when set
  std::vector<std::string> include;  // only these disks (target dev) when not empty
  std::vector<std::string> exclude;  // never these disks
  bool include_raw = false;          // also raw, block and network disks (copy/full only)
  // Where checkpoint XML is kept (-C); null for `checkpoints/` of the saveset.
  Storage* checkpoints = nullptr;
  std::string scratch_dir = "/var/tmp";
  std::string socket_file;    // "" for a socket in a work directory of ours
  bool start_domain = false;  // start a shut-off domain paused, destroy it afterwards
  bool pause = false;         // suspend the domain until its disks are read
  std::vector<std::string> freeze_mountpoints;  // empty: every filesystem the agent knows
  unsigned workers = 0;                         // disks read in parallel; 0: all at once
  std::optional<uint64_t> threshold;  // inc/diff: skip the backup below this many dirty bytes
  bool qemu_extents = false;          // extents from `qemu-img map` (debugging)
  bool print_only = false;            // print what would be read, back up nothing
  bool kill_only = false;             // abort a running backup job of the domain and stop
  bool progress = true;               // a progress bar on a terminal
  // Set by a signal handler: the run stops at the next read and cleans up.
  const std::atomic<bool>* cancel = nullptr;
  RunLog* log = nullptr;  // never null when RunBackup is called
  // Puts `log`'s file into the saveset; never null when RunBackup is called. The caller
  // uploads it (SavesetLog::Upload) after logging the outcome.
  SavesetLog* log_file = nullptr;
  std::string version;  // for the log
};

struct DiskSummary {
  std::string disk;  // target dev
  std::string file;  // data file written, its name in the saveset
  uint64_t virtual_size = 0;
  uint64_t data_bytes = 0;  // bytes read from the disk
  uint64_t file_bytes = 0;  // bytes of the data file
};

struct BackupSummary {
  CaptureLevel level = CaptureLevel::kFull;  // what ran (never kAuto)
  std::string checkpoint;                    // in the metadata; created only by full and inc
  std::string parent;                        // "" for a full backup
  bool skipped = false;  // print_only, kill_only or below the threshold: nothing written
  std::vector<DiskSummary> disks;
};

Result<BackupSummary> RunBackup(const BackupOptions& options);

}  // namespace backupfs
