#include "capture/chain_plan.h"

#include <algorithm>
#include <optional>

namespace backupfs {

namespace {

bool Listed(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

// Why the disk is not backed up ("" when it is).
std::string SkipReason(const DomainDisk& d, const BackupOptions& o, bool whole, bool qcow2) {
  if (!o.include.empty() && !Listed(o.include, d.target)) return "not included (-i)";
  if (Listed(o.exclude, d.target)) return "excluded (-x)";
  if (!qcow2 && !o.include_raw) {
    return "format '" + d.format + "' keeps no bitmaps (--raw takes it in copy and full backups)";
  }
  if (!qcow2 && !whole) {
    return "format '" + d.format + "' keeps no bitmaps: only copy and full backups take it";
  }
  return "";
}

}  // namespace

Result<DiskSelection> SelectDisks(const std::string& domain_xml, const BackupOptions& o,
                                  CaptureLevel level) {
  const std::string dom = "domain " + o.domain;
  BFS_ASSIGN_OR_RETURN(std::vector<DomainDisk> all, ParseDomainDisks(domain_xml, o.domain));
  for (const std::string& name : o.include) {
    if (std::none_of(all.begin(), all.end(),
                     [&](const DomainDisk& d) { return d.target == name; })) {
      return Status::InvalidArgument(dom + " has no disk " + name + " (-i)");
    }
  }
  const bool whole = level == CaptureLevel::kCopy || level == CaptureLevel::kFull;
  DiskSelection out;
  for (DomainDisk& d : all) {
    const bool qcow2 = d.format == "qcow2" && d.device != "lun";
    const std::string skip = SkipReason(d, o, whole, qcow2);
    if (!skip.empty()) {
      out.skipped.push_back("skipping disk " + d.target + ": " + skip);
      out.job_disks.push_back({d.target, false, false});
      continue;
    }
    out.job_disks.push_back({d.target, true, qcow2});
    out.disks.push_back({std::move(d), !qcow2});
  }
  if (out.disks.empty()) {
    return Status::InvalidArgument(
        dom +
        " has no disk to back up (only qcow2 disks keep the bitmaps that backups need; --raw adds "
        "others to copy and full backups)");
  }
  return out;
}

ChainStep PlanChainStep(CaptureLevel level, const std::vector<std::string>& list, std::time_t now) {
  if (level == CaptureLevel::kCopy) {
    return {CheckpointName(0), "", "copy", false, {}};  // virtnbdbackup's metadata for copy
  }
  if (level == CaptureLevel::kFull) {
    return {CheckpointName(0), "", CheckpointName(0), true, {CheckpointName(0)}};
  }
  ChainStep step;
  step.list = list;
  step.parent = list.back();
  step.checkpoint = NextCheckpointName(list);
  if (level == CaptureLevel::kDiff) {
    step.id = std::to_string(now);
    return step;
  }
  step.id = step.checkpoint;
  step.create = true;
  step.list.push_back(step.checkpoint);
  return step;
}

std::string DataFileName(const SelectedDisk& d, CaptureLevel level, const ChainStep& step) {
  const std::string& disk = d.disk.target;
  if (d.raw) return disk + ".copy.data";  // virtnbdbackup's name for raw disks
  switch (level) {
    case CaptureLevel::kCopy:
      return disk + ".copy.data";
    case CaptureLevel::kInc:
      return disk + ".inc." + step.id + ".data";
    case CaptureLevel::kDiff:
      return disk + ".diff." + step.id + ".data";
    default:
      return disk + ".full.data";
  }
}

Status RefuseExistingBackup(const Storage& saveset, const std::vector<SelectedDisk>& disks,
                            CaptureLevel level, const ChainStep& step) {
  for (const SelectedDisk& d : disks) {
    const std::string file = DataFileName(d, level, step);
    BFS_ASSIGN_OR_RETURN(std::optional<StoredObject> there, saveset.Stat(file));
    if (!there) continue;
    const bool new_chain = level == CaptureLevel::kFull || level == CaptureLevel::kCopy;
    return Status::InvalidArgument(
        saveset.address() + " already holds " + file +
        (new_chain ? ": a new chain (or copy) needs an empty directory"
                   : ", which this run would write: move it away if it is not part of the "
                     "chain, or start a new chain"));
  }
  return Status::Ok();
}

}  // namespace backupfs
