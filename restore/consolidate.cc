#include "restore/consolidate.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <filesystem>

#include "backupfs/consolidation_journal.h"
#include "backupfs/full_writer.h"
#include "backupfs/saveset.h"
#include "capture/checkpoints.h"
#include "capture/pending_checkpoints.h"
#include "common/progress.h"
#include "common/vmconfig_adjust.h"
#include "stream/file.h"
#include "stream/local_storage.h"

namespace backupfs {
namespace {

namespace fs = std::filesystem;

WriterOptions FullWriterOptions() {
  WriterOptions w;
  w.durable = true;
  w.compress_threads = 2;  // lz4 fulls: compress beside the reads
  return w;
}

// The new full takes the replaced full's mtime: virtnbdrestore orders a chain's files by
// mtime, and the full must stay older than the incs that follow it.
Status KeepMtime(const std::string& from, const std::string& to) {
  struct stat st {};
  if (::stat(from.c_str(), &st) != 0) return Status::FromErrno("cannot stat " + from, errno);
  const struct timespec times[2] = {st.st_atim, st.st_mtim};
  if (::utimensat(AT_FDCWD, to.c_str(), times, 0) != 0) {
    return Status::FromErrno("cannot set the mtime of " + to, errno);
  }
  return Status::Ok();
}

// The new full's mtime in a local saveset (a store sets an object's time itself).
Status KeepMtimeIfLocal(const Storage& saveset, const std::string& from, const std::string& to) {
  const std::optional<std::string> dir = saveset.LocalDir();
  return dir ? KeepMtime(JoinName(*dir, from), JoinName(*dir, to)) : Status::Ok();
}

// Small files a consolidation writes (checkpoint XML and list), readable as capture's are.
PutOptions SmallFile() {
  PutOptions put;
  put.mode = 0644;
  return put;
}

class Consolidation {
 public:
  Consolidation(const ConsolidateOptions& o, RunLog& log)
      : o_(o),
        log_(log),
        storage_(o.storage ? o.storage : std::shared_ptr<Storage>(OpenLocalStorage(o.input))),
        output_(o.output) {}

  Result<ConsolidateSummary> InPlace() {
    BFS_ASSIGN_OR_RETURN(std::unique_ptr<StorageLock> lock,
                         storage_->Lock(o_.retention ? "backupfs-restore -a retention"
                                                     : "backupfs-restore -a consolidate"));
    if (o_.dry_run) {
      // Changes nothing: the plan is made on what readers see (a committed journal applied).
      BFS_ASSIGN_OR_RETURN(std::optional<StoredObject> staging, storage_->Stat(kStagingDirName));
      if (staging) {
        log_.Info(storage_->Describe(kStagingDirName) +
                  " holds an interrupted consolidation: a real run finishes (or discards) it "
                  "first");
      }
    } else {
      BFS_ASSIGN_OR_RETURN(std::string finished, CompleteConsolidation(*storage_));
      if (!finished.empty()) log_.Warn(finished);
    }
    BFS_ASSIGN_OR_RETURN(SavesetModel model, LoadSaveset(storage_, OpenOptions{}));
    const std::string point =
        o_.retention ? RetentionPoint(model, *o_.retention, o_.now) : o_.point;
    if (!point.empty()) {
      BFS_ASSIGN_OR_RETURN(summary_.plan, PlanConsolidation(model, point));
    }
    const ConsolidationPlan& plan = summary_.plan;
    if (o_.dry_run) return summary_;
    if (point.empty()) {
      log_.Info("every restore point of " + o_.input + " is kept by the policy: nothing to fold");
    } else if (plan.nothing_to_do()) {
      log_.Info(point + " is the full backup of " + o_.input + " already: nothing to fold");
    } else {
      Status staged = Stage();
      if (!staged.ok()) {
        Result<std::string> cleaned = CompleteConsolidation(*storage_);  // no commit: removes
        if (!cleaned.ok()) log_.Warn(cleaned.status().message());
        return staged;
      }
      BFS_RETURN_IF_ERROR(CompleteConsolidation(*storage_).status());
      log_.Info("folded " + std::to_string(plan.folded_points.size()) + " restore points into " +
                "the full backup at " + plan.point);
    }
    BFS_ASSIGN_OR_RETURN(summary_.pending_checkpoints, DeletePending());
    return summary_;
  }

  Result<ConsolidateSummary> ToNewDir() {
    // NEWDIR/ and NEWDIR are one directory: the staging one goes beside it either way.
    while (output_.size() > 1 && output_.back() == '/') output_.pop_back();
    BFS_RETURN_IF_ERROR(RefuseUsedOutput());
    BFS_ASSIGN_OR_RETURN(SavesetModel model, LoadSaveset(storage_, OpenOptions{}));
    // Only the point's own chains are read: damage elsewhere does not matter here.
    BFS_ASSIGN_OR_RETURN(const RestorePoint* point, FindCheckpointPoint(model, o_.point));
    ConsolidationPlan& plan = summary_.plan;
    plan.point = point->name;
    for (const DiskChain& d : point->disks) plan.fulls.push_back(MakeNewFull(d, *storage_));
    // The chain continues in NEWDIR only from the newest checkpoint (see the header).
    const bool newest = std::none_of(
        std::find_if(model.points.begin(), model.points.end(),
                     [&](const RestorePoint& p) { return &p == point; }) +
            1,
        model.points.end(), [](const RestorePoint& p) { return IsCheckpointPoint(p); });
    if (newest) {
      BFS_ASSIGN_OR_RETURN(std::vector<StoredObject> files, storage_->List());
      for (const StoredObject& f : files) {
        if (!f.is_dir() && f.name.ends_with(".cpt")) plan.checkpoint_file = f.name;
      }
      const std::string xml = "checkpoints/" + point->name + ".xml";
      BFS_ASSIGN_OR_RETURN(std::optional<StoredObject> saved, storage_->Stat(xml));
      if (saved && !saved->is_dir()) plan.checkpoint_xml = xml;
    }
    if (o_.dry_run) return summary_;
    const std::string tmp = output_ + ".backupfs-partial";
    std::error_code ec;
    fs::remove_all(tmp, ec);  // a killed run's
    Status s = WriteNewDir(tmp, *point);
    if (s.ok()) s = MoveIntoPlace(tmp);
    if (!s.ok()) fs::remove_all(tmp, ec);
    BFS_RETURN_IF_ERROR(s);
    return summary_;
  }

 private:
  // The new full of `f` into `name` of `out` (the saveset's staging area, or a new directory).
  Status WriteFull(const NewFull& f, Storage& out, const std::string& name) {
    if (o_.stop != nullptr && o_.stop->load()) return Status::Cancelled("stopped");
    std::shared_ptr<DiskImage> image = DiskImage::Build(f.chain);
    log_.Info(f.disk + ": writing " + out.Describe(name) + " from " +
              std::to_string(f.chain.files.size()) + " data file(s)");
    BFS_ASSIGN_OR_RETURN(FullWriteStats stats,
                         WriteFullBackup(*image, f.meta, out, name, FullWriterOptions(), o_.stop));
    summary_.data_bytes += stats.data_bytes;
    summary_.file_bytes += stats.file_bytes;
    return Status::Ok();
  }

  // The saved XML of the point's checkpoint (`rel`, in the saveset) as the root of a chain.
  Result<std::string> RootCheckpointXml(const std::string& rel) const {
    BFS_ASSIGN_OR_RETURN(std::string xml, storage_->ReadAll(rel));
    return WithoutCheckpointParent(xml, storage_->Describe(rel));
  }

  // Libvirt checkpoints of folded points, deleted through capture/pending_checkpoints.h, which
  // reads a local saveset's list; a store's list is named for `virsh checkpoint-delete`.
  Result<std::vector<std::string>> DeletePending() {
    if (std::optional<std::string> dir = storage_->LocalDir()) {
      return DeletePendingCheckpoints(*dir, LibvirtOnly(o_.uri), log_);
    }
    BFS_ASSIGN_OR_RETURN(PendingCheckpoints pending, ReadPendingCheckpoints(*storage_));
    if (!pending.checkpoints.empty()) {
      log_.Warn(storage_->Describe(kPendingCheckpointsName) + " lists libvirt checkpoints of " +
                pending.domain + " to delete, oldest first: virsh checkpoint-delete " +
                pending.domain + " " + pending.checkpoints.front() + " (and the next ones)");
    }
    return pending.checkpoints;
  }

  // Every new file into the staging directory, then the commit.
  Status Stage() {
    const ConsolidationPlan& plan = summary_.plan;
    Storage& s = *storage_;
    BFS_RETURN_IF_ERROR(s.MakeDir(kStagingDirName));
    ConsolidationJournal j;
    j.point = plan.point;
    const std::string rel = std::string(kStagingDirName) + "/";
    for (const NewFull& f : plan.fulls) {
      BFS_RETURN_IF_ERROR(WriteFull(f, s, rel + f.file));
      BFS_RETURN_IF_ERROR(KeepMtimeIfLocal(s, f.old_full, rel + f.file));
      for (const char* sidecar : {".idx", ".chksum"}) {  // before their data file
        BFS_ASSIGN_OR_RETURN(std::optional<StoredObject> there, s.Stat(rel + f.file + sidecar));
        if (there) j.install.emplace_back(rel + f.file + sidecar, f.file + sidecar);
      }
      j.install.emplace_back(rel + f.file, f.file);
    }
    if (!plan.checkpoint_xml.empty()) {
      BFS_ASSIGN_OR_RETURN(std::string root, RootCheckpointXml(plan.checkpoint_xml));
      BFS_RETURN_IF_ERROR(s.PutText(rel + "checkpoint.xml", root, SmallFile()));
      j.install.emplace_back(rel + "checkpoint.xml", plan.checkpoint_xml);
    }
    if (!plan.checkpoint_file.empty()) {
      BFS_RETURN_IF_ERROR(WriteCheckpointList(s, rel + plan.checkpoint_file, plan.checkpoint_list));
      j.install.emplace_back(rel + plan.checkpoint_file, plan.checkpoint_file);
    }
    j.remove = plan.remove;
    j.domain = plan.domain;
    j.libvirt_checkpoints = plan.libvirt_checkpoints;
    BFS_RETURN_IF_ERROR(SyncDirs(s, {kStagingDirName}));
    if (o_.stop != nullptr && o_.stop->load())
      return Status::Cancelled("stopped before the commit");
    return CommitJournal(s, j);
  }

  Status RefuseUsedOutput() const {
    std::error_code ec;
    if (fs::exists(output_, ec) && !fs::is_empty(output_, ec)) {
      return Status::InvalidArgument(output_ +
                                     " is not empty: a synthetic full backup goes "
                                     "into a new (or empty) directory");
    }
    const std::optional<std::string> input = storage_->LocalDir();
    if (input && fs::equivalent(*input, fs::path(output_).parent_path(), ec)) {
      return Status::InvalidArgument(output_ + " is inside the saveset " + o_.input);
    }
    return Status::Ok();
  }

  // The point's fulls, its own files, and (when the chain can continue there) its checkpoint.
  Status WriteNewDir(const std::string& tmp, const RestorePoint& point) {
    std::error_code ec;
    fs::create_directories(tmp, ec);
    if (ec) return Status::IOError("cannot create " + tmp + ": " + ec.message());
    std::unique_ptr<Storage> out = OpenLocalStorage(tmp);
    for (const NewFull& f : summary_.plan.fulls) BFS_RETURN_IF_ERROR(WriteFull(f, *out, f.file));
    BFS_ASSIGN_OR_RETURN(std::vector<StoredObject> files, storage_->List());
    for (const StoredObject& f : files) {
      if (f.is_dir() || !IsPointFile(f.name, point.id)) continue;
      BFS_ASSIGN_OR_RETURN(std::string bytes, storage_->ReadAll(f.name));
      BFS_RETURN_IF_ERROR(out->PutText(f.name, bytes, SmallFile()));
    }
    const ConsolidationPlan& plan = summary_.plan;
    if (plan.checkpoint_file.empty()) {
      log_.Info(point.name + " is not the newest checkpoint of " + o_.input + ": " + output_ +
                " is an archive (no checkpoint list), which backupfs-capture does not continue");
      return Status::Ok();
    }
    BFS_RETURN_IF_ERROR(WriteCheckpointList(tmp + "/" + plan.checkpoint_file, {point.name}));
    if (!plan.checkpoint_xml.empty()) {  // the root of the new saveset's chain
      fs::create_directories(tmp + "/checkpoints", ec);
      BFS_ASSIGN_OR_RETURN(std::string root, RootCheckpointXml(plan.checkpoint_xml));
      BFS_RETURN_IF_ERROR(out->PutText(plan.checkpoint_xml, root, SmallFile()));
    }
    log_.Warn(output_ + " continues the chain at " + point.name + ": back up into it or into " +
              o_.input +
              " from now on, not both (both would "
              "create the next checkpoint)");
    return Status::Ok();
  }

  Status MoveIntoPlace(const std::string& tmp) {
    BFS_RETURN_IF_ERROR(FsyncParentDir(tmp + "/x"));
    std::error_code ec;
    if (fs::exists(output_, ec)) fs::remove(output_, ec);  // empty: checked above
    if (::rename(tmp.c_str(), output_.c_str()) != 0) {
      return Status::FromErrno("cannot rename " + tmp + " to " + output_, errno);
    }
    return FsyncParentDir(output_);
  }

  const ConsolidateOptions& o_;
  RunLog& log_;
  const std::shared_ptr<Storage> storage_;  // the saveset
  std::string output_;                      // -o, without trailing slashes
  ConsolidateSummary summary_;
};

}  // namespace

Result<ConsolidateSummary> RunConsolidate(const ConsolidateOptions& options, RunLog& log) {
  Consolidation c(options, log);
  return options.output.empty() ? c.InPlace() : c.ToNewDir();
}

std::string RetentionPoint(const SavesetModel& model, const RetentionPolicy& policy,
                           std::time_t now) {
  std::vector<const RestorePoint*> points;
  for (const RestorePoint& p : model.points) {
    if (p.name != "copy") points.push_back(&p);
  }
  size_t oldest_kept = points.size();
  for (size_t i = 0; i < points.size(); ++i) {
    const bool last = policy.keep_last && points.size() - i <= *policy.keep_last;
    const std::time_t t = ParseMetadataDate(points[i]->date).tv_sec;
    // An unreadable date keeps its point: age cannot be told.
    const bool young = policy.keep_days && (t == 0 || now - t < *policy.keep_days * 86400);
    if (last || young) {
      oldest_kept = i;
      break;
    }
  }
  if (oldest_kept == points.size() && !points.empty()) --oldest_kept;  // the newest always stays
  // A diff needs the checkpoint it was taken against, which sits before it in the order.
  while (oldest_kept < points.size() && !IsCheckpointPoint(*points[oldest_kept])) {
    if (oldest_kept == 0) return "";
    --oldest_kept;
  }
  if (oldest_kept == 0 || oldest_kept >= points.size()) return "";
  return points[oldest_kept]->name;
}

}  // namespace backupfs
