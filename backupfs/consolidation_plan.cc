#include "backupfs/consolidation_plan.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "backupfs/saveset.h"
#include "stream/local_storage.h"

namespace backupfs {
namespace {

namespace fs = std::filesystem;

using FileSet = std::set<std::string>;  // data files, relative to the saveset

class Planner {
 public:
  Planner(const SavesetModel& model, const std::string& point)
      : model_(model),
        storage_(model.storage ? model.storage : OpenLocalStorage(model.dir)),
        dir_(model.dir),
        point_(point) {}

  Result<ConsolidationPlan> Run() {
    BFS_RETURN_IF_ERROR(ListNames());
    BFS_RETURN_IF_ERROR(RefuseDamage());  // first: it says why a point is unavailable
    BFS_ASSIGN_OR_RETURN(const RestorePoint* p, FindCheckpointPoint(model_, point_));
    plan_.point = point_;
    for (const DiskChain& d : p->disks) {
      newest_[d.disk] = Rel(d.files.back()->path());
      if (d.files.size() > 1) AddNewFull(d);
    }
    if (plan_.nothing_to_do()) {
      for (const RestorePoint& q : model_.points) plan_.kept_points.push_back(q.name);
      return plan_;
    }
    SplitPoints();
    BFS_RETURN_IF_ERROR(RefuseLastBackupOfADisk());
    BFS_RETURN_IF_ERROR(CheckpointFiles());
    BFS_RETURN_IF_ERROR(CollectRemovals());
    return plan_;
  }

 private:
  std::string Rel(const std::string& path) const { return RelativeName(*storage_, path); }
  FileSet Files(const RestorePoint& q) const {
    FileSet out;
    for (const DiskChain& d : q.disks) {
      for (const auto& r : d.files) out.insert(Rel(r->path()));
    }
    return out;
  }

  Status ListNames() {
    Result<std::vector<StoredObject>> listed = storage_->List();
    if (!listed.ok()) return listed.status().WithPrefix("cannot list " + dir_);
    for (const StoredObject& o : *listed) {
      if (!o.is_dir()) sizes_[o.name] = o.size;
    }
    return Status::Ok();
  }

  Status RefuseDamage() const {
    if (model_.damage.empty()) return Status::Ok();
    return Status::FailedPrecondition(
        dir_ +
        " is damaged, and a consolidation removes files, so it must understand every "
        "chain first: " +
        model_.damage.front() +
        (model_.damage.size() > 1 ? " (and " + std::to_string(model_.damage.size() - 1) +
                                        " more problems: backupfs-restore -a verify)"
                                  : ""));
  }

  void AddNewFull(const DiskChain& d) {
    NewFull f = MakeNewFull(d, *storage_);
    for (const auto& r : d.files) merged_.insert(Rel(r->path()));
    replaced_.insert(f.old_full);
    plan_.fulls.push_back(std::move(f));
  }

  // Folded: a chain that uses a merged file without reaching the point (see the header).
  bool Folded(const RestorePoint& q) const {
    for (const DiskChain& d : q.disks) {
      bool uses_merged = false, reaches_point = false;
      for (const auto& r : d.files) {
        const std::string f = Rel(r->path());
        uses_merged |= merged_.count(f) > 0;
        auto newest = newest_.find(d.disk);
        reaches_point |= newest != newest_.end() && newest->second == f;
      }
      if (uses_merged && !reaches_point) return true;
    }
    return false;
  }

  void SplitPoints() {
    for (const RestorePoint& q : model_.points) {
      if (q.name != point_ && Folded(q)) {
        plan_.folded_points.push_back(q.name);
        for (const std::string& f : Files(q)) folded_files_.insert(f);
        if (IsCheckpointPoint(q)) folded_checkpoints_.insert(q.name);
      } else {
        plan_.kept_points.push_back(q.name);
        for (const std::string& f : Files(q)) kept_files_.insert(f);
      }
    }
  }

  // A disk that no kept point has (excluded from later backups, or detached) would lose its
  // last backup with the folded points: that is for the admin to decide, not a side effect.
  Status RefuseLastBackupOfADisk() const {
    std::set<std::string> kept_disks;
    for (const RestorePoint& q : model_.points) {
      if (std::find(plan_.kept_points.begin(), plan_.kept_points.end(), q.name) ==
          plan_.kept_points.end()) {
        continue;
      }
      for (const DiskChain& d : q.disks) kept_disks.insert(d.disk);
    }
    for (const RestorePoint& q : model_.points) {
      for (const DiskChain& d : q.disks) {
        if (kept_disks.count(d.disk) || !Folded(q)) continue;
        return Status::FailedPrecondition(
            dir_ + ": disk " + d.disk + " is in no restore point from " + point_ +
            " on (its newest backup is at " + LastPointOf(d.disk) +
            "): consolidating would delete its last backup. Restore or copy it first "
            "(backupfs-restore -u " +
            LastPointOf(d.disk) + " -d " + d.disk + "), then move its data files out of " + dir_);
      }
    }
    return Status::Ok();
  }
  std::string LastPointOf(const std::string& disk) const {
    std::string last;
    for (const RestorePoint& q : model_.points) {
      for (const DiskChain& d : q.disks) last = d.disk == disk ? q.name : last;
    }
    return last;
  }

  // `<domain>.cpt` without the folded checkpoints; the point's checkpoint XML loses its parent.
  Status CheckpointFiles() {
    std::vector<std::string> cpts;
    for (const auto& [n, size] : sizes_) {
      if (n.ends_with(".cpt")) cpts.push_back(n);
    }
    if (cpts.size() == 1) {
      plan_.checkpoint_file = cpts.front();
      plan_.domain = cpts.front().substr(0, cpts.front().size() - 4);
      const std::string path = storage_->Describe(cpts.front());
      BFS_ASSIGN_OR_RETURN(std::string text, storage_->ReadAll(cpts.front()));
      auto j = nlohmann::json::parse(text, nullptr, false);
      if (j.is_discarded() || !j.is_array()) {
        return Status::Corruption(path + ": not a JSON list of checkpoints");
      }
      for (const auto& name : j) {
        if (!name.is_string()) return Status::Corruption(path + ": not a list of names");
        const std::string c = name.get<std::string>();
        (folded_checkpoints_.count(c) ? plan_.libvirt_checkpoints : plan_.checkpoint_list)
            .push_back(c);
      }
    }
    for (const RestorePoint& q : model_.points) {  // folded checkpoints the list lacks
      if (folded_checkpoints_.count(q.name) &&
          std::find(plan_.libvirt_checkpoints.begin(), plan_.libvirt_checkpoints.end(), q.name) ==
              plan_.libvirt_checkpoints.end()) {
        plan_.libvirt_checkpoints.push_back(q.name);
      }
    }
    BFS_ASSIGN_OR_RETURN(std::optional<uint64_t> xml, SizeOf(CheckpointXml(point_)));
    if (xml) plan_.checkpoint_xml = CheckpointXml(point_);
    return Status::Ok();
  }

  static std::string CheckpointXml(const std::string& point) {
    return "checkpoints/" + point + ".xml";
  }

  // nullopt when `file` is no file of the saveset. The listing has the saveset's own files;
  // files in subdirectories are asked for.
  Result<std::optional<uint64_t>> SizeOf(const std::string& file) const {
    if (auto listed = sizes_.find(file); listed != sizes_.end()) {
      return std::optional<uint64_t>(listed->second);
    }
    if (file.find('/') == std::string::npos) return std::optional<uint64_t>();
    BFS_ASSIGN_OR_RETURN(std::optional<StoredObject> o, storage_->Stat(file));
    if (!o || o->is_dir()) return std::optional<uint64_t>();
    return std::optional<uint64_t>(o->size);
  }

  Status Remove(const std::string& file) {
    BFS_ASSIGN_OR_RETURN(std::optional<uint64_t> size, SizeOf(file));
    if (!size) return Status::Ok();  // not there (a sidecar the file never had)
    plan_.remove.push_back(file);
    plan_.remove_bytes += *size;
    return Status::Ok();
  }

  // Merged and folded data files no kept point needs (the replaced fulls are overwritten
  // instead), with their sidecars; the folded points' own files and checkpoint XML.
  Status CollectRemovals() {
    FileSet data = merged_;
    data.insert(folded_files_.begin(), folded_files_.end());
    for (const std::string& f : data) {
      if (replaced_.count(f) || (kept_files_.count(f) && !merged_.count(f))) continue;
      for (const char* suffix : {"", ".idx", ".chksum"}) BFS_RETURN_IF_ERROR(Remove(f + suffix));
    }
    for (const std::string& q : plan_.folded_points) {
      for (const auto& [n, size] : sizes_) {
        if (IsPointFile(n, q)) BFS_RETURN_IF_ERROR(Remove(n));
      }
      if (folded_checkpoints_.count(q)) BFS_RETURN_IF_ERROR(Remove(CheckpointXml(q)));
    }
    return Status::Ok();
  }

  const SavesetModel& model_;
  const std::shared_ptr<Storage> storage_;
  const std::string dir_;
  const std::string point_;
  std::map<std::string, uint64_t> sizes_;  // the saveset's own files (not subdirectories')
  ConsolidationPlan plan_;
  std::map<std::string, std::string> newest_;  // disk -> the point's newest file
  FileSet merged_;                             // the files of the chains merged into new fulls
  FileSet replaced_;                           // the old fulls the new ones replace
  FileSet folded_files_, kept_files_;
  std::set<std::string> folded_checkpoints_;
};

// The level of the newest file of a point's chain on one disk.
std::optional<BackupLevel> NewestLevel(const DiskChain& d) {
  auto name = ParseDataFileName(fs::path(d.files.back()->path()).filename());
  return name ? std::optional(name->level) : std::nullopt;
}

bool IsCheckpointLevel(std::optional<BackupLevel> l) {
  return l == BackupLevel::kFull || l == BackupLevel::kInc;
}

}  // namespace

bool IsCheckpointPoint(const RestorePoint& p) {
  return std::any_of(p.disks.begin(), p.disks.end(),
                     [](const DiskChain& d) { return IsCheckpointLevel(NewestLevel(d)); });
}

Result<const RestorePoint*> FindCheckpointPoint(const SavesetModel& model,
                                                const std::string& point) {
  const RestorePoint* found = nullptr;
  std::string known;
  for (const RestorePoint& q : model.points) {
    if (q.name == point) found = &q;
    known += (known.empty() ? "" : ", ") + q.name;
  }
  if (found == nullptr) {
    return Status::NotFound(model.dir + " has no restore point '" + point + "'" +
                            (known.empty() ? "" : " (it has " + known + ")"));
  }
  for (const DiskChain& d : found->disks) {
    const std::optional<BackupLevel> level = NewestLevel(d);
    if (IsCheckpointLevel(level)) continue;
    return Status::InvalidArgument(
        model.dir + ": restore point " + point + " is a " +
        (level == BackupLevel::kCopy ? "copy" : "diff") +
        " backup: only a checkpoint (a full or inc backup) can become the new full "
        "backup that the chain continues from");
  }
  if (auto u = model.unavailable.find(point); u != model.unavailable.end()) {
    return Status::FailedPrecondition(model.dir + ": restore point " + point +
                                      " is unavailable: " + u->second.begin()->second);
  }
  return found;
}

std::string RelativeName(const Storage& saveset, const std::string& described) {
  std::string base = saveset.Describe("x");  // "<dir>/x" or "s3://bucket/prefix/x"
  base.pop_back();
  return described.starts_with(base) ? described.substr(base.size()) : described;
}

NewFull MakeNewFull(const DiskChain& d, const Storage& saveset) {
  NewFull f;
  f.disk = d.disk;
  f.chain = d;
  f.file = d.disk + ".full.data";
  f.old_full = RelativeName(saveset, d.files.front()->path());
  f.meta = d.files.back()->meta();
  const StreamMetadata& old = d.files.front()->meta();
  f.meta.parent_checkpoint = "";
  f.meta.incremental = false;
  f.meta.virtual_size = d.virtual_size;
  f.meta.compression_level = old.compression_level;  // the saveset's own choice
  f.meta.compression_method = old.compression_method;
  f.meta.stream_version = 2;
  f.meta.raw = {};
  return f;
}

Result<ConsolidationPlan> PlanConsolidation(const SavesetModel& model, const std::string& point) {
  return Planner(model, point).Run();
}

}  // namespace backupfs
