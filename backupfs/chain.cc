#include "backupfs/chain.h"

#include "stream/local_storage.h"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

namespace backupfs {
namespace {

// The files of one disk, by role.
struct DiskFiles {
  std::shared_ptr<StreamReader> full;
  std::shared_ptr<StreamReader> copy;
  std::map<std::string, std::shared_ptr<StreamReader>> by_checkpoint;        // full + incs
  std::vector<std::pair<std::string, std::shared_ptr<StreamReader>>> diffs;  // id, reader
};

enum class PointKind { kCheckpoint, kDiff, kCopy };

// Where a point goes in the order (the rule is in chain.h), gathered over its disks.
struct Placement {
  PointKind kind = PointKind::kCheckpoint;
  std::string anchor;  // the checkpoint it follows: its own, or a diff's parent
  size_t depth = 0;    // files from the full backup up to the anchor, longest over the disks
  uint64_t time = 0;   // a diff's unix time; 0 when its name is not a number
};

// The sort key of a point: chain position, .cpt rank, then checkpoint before its diffs (by
// time) before a copy, and the name so that the order is total.
using OrderKey = std::tuple<size_t, size_t, PointKind, uint64_t, std::string>;

uint64_t DiffTime(const std::string& id) {
  uint64_t t = 0;
  auto [end, ec] = std::from_chars(id.data(), id.data() + id.size(), t);
  return ec == std::errc() && end == id.data() + id.size() ? t : 0;
}

// A checkpoint list names each checkpoint once: even a long chain's is a few hundred KiB.
constexpr uint64_t kMaxCheckpointList = 64u << 20;

// The mount shows a point as a directory: its name must be one, and not `latest`.
bool ShownAsDirectory(const std::string& point) {
  return !point.empty() && point != "." && point != ".." && point != "latest" &&
         point.find('/') == std::string::npos && point.find('\0') == std::string::npos;
}

// The checkpoint list `<domain>.cpt`, when there is exactly one; used to order points.
std::vector<std::string> ReadCheckpointList(const Storage& saveset,
                                            const std::vector<std::string>& names,
                                            std::vector<std::string>* problems) {
  std::vector<std::string> out;
  for (const std::string& name : names) {
    if (!name.ends_with(".cpt")) continue;
    Result<std::string> text = saveset.ReadAll(name, kMaxCheckpointList);
    auto j = text.ok() ? nlohmann::json::parse(*text, nullptr, false) : nlohmann::json();
    if (!text.ok() || j.is_discarded() || !j.is_array()) {
      problems->push_back(saveset.Describe(name) + ": not a JSON list of checkpoints; ignored");
      continue;
    }
    for (const auto& checkpoint : j) {
      if (checkpoint.is_string()) out.push_back(checkpoint.get<std::string>());
    }
  }
  return out;
}

// Checks that a file's metadata agrees with its name; returns "" or the problem.
std::string NameMismatch(const DataFileName& n, const StreamReader& r) {
  const StreamMetadata& m = r.meta();
  if (m.disk_name != n.disk) {
    return r.path() + ": metadata names disk '" + m.disk_name + "', the file name '" + n.disk + "'";
  }
  if (n.level == BackupLevel::kInc && m.checkpoint_name != n.id) {
    return r.path() + ": metadata names checkpoint '" + m.checkpoint_name + "', the file name '" +
           n.id + "'";
  }
  if ((n.level == BackupLevel::kInc || n.level == BackupLevel::kDiff) && !m.incremental) {
    return r.path() + ": an incremental file whose metadata says it is not incremental";
  }
  return "";
}

using Chain = std::vector<std::shared_ptr<StreamReader>>;

// Follows parent links from `checkpoint` back to the full backup; `top` (a diff), when given,
// goes on top of it. A missing parent or a loop is reported naming the file that points there.
Result<Chain> ChainTo(const DiskFiles& files, const std::string& disk,
                      const std::string& checkpoint, std::shared_ptr<StreamReader> top = nullptr) {
  Chain chain;  // newest first while walking
  if (top) chain.push_back(std::move(top));
  std::set<std::string> seen;
  std::string at = checkpoint;
  for (;;) {
    auto it = files.by_checkpoint.find(at);
    if (it == files.by_checkpoint.end()) {
      return Status::NotFound("disk " + disk + ": no data file for checkpoint '" + at + "'" +
                              (chain.empty() ? "" : " (parent of " + chain.back()->path() + ")"));
    }
    if (!seen.insert(at).second) {
      return Status::Corruption("disk " + disk + ": " + chain.back()->path() +
                                ": parent checkpoint '" + at + "' loops back into its own chain");
    }
    chain.push_back(it->second);
    if (it->second == files.full) break;
    at = it->second->meta().parent_checkpoint;
    if (at.empty()) {
      return Status::Corruption(it->second->path() + ": incremental without a parent checkpoint");
    }
  }
  std::reverse(chain.begin(), chain.end());
  return chain;
}

class Resolver {
 public:
  Resolver(Storage& saveset, const OpenOptions& options, SavesetModel* model)
      : saveset_(saveset), options_(options), model_(model) {}

  // From `listed` when given, else from a listing of its own.
  Status Run(const std::vector<StoredObject>* listed) {
    BFS_ASSIGN_OR_RETURN(SavesetListing listing,
                         listed ? ListSaveset(saveset_, *listed) : ListSaveset(saveset_));
    for (const std::string& p : listing.partial_files) {
      model_->problems.push_back(saveset_.Describe(p) +
                                 ": leftover of an interrupted backup; ignored");
    }
    for (const DataFileName& n : listing.data_files) Open(n);
    std::vector<std::string> order =
        ReadCheckpointList(saveset_, listing.checkpoint_lists, &model_->problems);
    for (auto& [disk, files] : disks_) ResolveDisk(disk, files);
    Finish(order);
    return Status::Ok();
  }

 private:
  // A problem that costs restore points (see SavesetModel::damage); `point` "*" for all.
  void Damage(const std::string& message, const std::string& point = "",
              const std::string& disk = "") {
    model_->problems.push_back(message);
    model_->damage.push_back(message);
    if (!disk.empty()) model_->unavailable[point][disk] = message;
  }
  static std::string PointOf(const DataFileName& n) {
    return n.level == BackupLevel::kInc || n.level == BackupLevel::kDiff ? n.id : "*";
  }

  void Open(const DataFileName& n) {
    const std::string path = saveset_.Describe(n.file);
    std::shared_ptr<StreamReader> reader =
        options_.reuse ? options_.reuse(path, n.version) : nullptr;
    if (!reader) {
      auto r = StreamReader::Open(saveset_, n.file, options_.reader);
      if (!r.ok()) {
        Damage(r.status().message(), PointOf(n), n.disk);
        return;
      }
      reader = std::move(r).value();
    }
    if (!reader->index_problem().empty()) {
      model_->problems.push_back(reader->index_problem() + "; the index was rebuilt by scanning");
    }
    std::string mismatch = NameMismatch(n, *reader);
    if (!mismatch.empty()) {
      Damage(mismatch, PointOf(n), n.disk);
      return;
    }
    DiskFiles& files = disks_[n.disk];
    switch (n.level) {
      case BackupLevel::kFull:
        files.full = reader;
        files.by_checkpoint[reader->meta().checkpoint_name] = reader;  // full sorts first
        break;
      case BackupLevel::kCopy:
        files.copy = reader;
        break;
      case BackupLevel::kInc:
        if (!files.by_checkpoint.emplace(n.id, reader).second) {
          Damage(reader->path() + ": checkpoint '" + n.id +
                 "' is already the full backup's; ignored");
        }
        break;
      case BackupLevel::kDiff:
        files.diffs.emplace_back(n.id, reader);
        break;
    }
  }

  // Adds one disk's chain to a point; `anchor` is the checkpoint the point follows.
  void Add(const std::string& point, PointKind kind, const std::string& anchor,
           const std::string& disk, Chain chain) {
    if (!ShownAsDirectory(point)) {
      Damage(chain.back()->path() + ": restore point name '" + point +
             "' cannot be shown as a directory; skipped");
      return;
    }
    Placement& at = placements_[point];
    at.kind = kind;
    at.anchor = anchor;
    if (kind != PointKind::kCopy) {
      at.depth = std::max(at.depth, chain.size() - (kind == PointKind::kDiff ? 1 : 0));
    }
    if (kind == PointKind::kDiff) at.time = DiffTime(point);
    RestorePoint& p = points_[point];
    p.name = point;
    p.id = point;
    const StreamMetadata& newest = chain.back()->meta();
    p.date = std::max(p.date, newest.date);
    p.disks.push_back({disk, std::move(chain), newest.virtual_size});
  }

  void ResolveDisk(const std::string& disk, const DiskFiles& files) {
    if (files.copy) Add("copy", PointKind::kCopy, "", disk, {files.copy});
    if (!files.full) {
      for (const auto& [checkpoint, reader] : files.by_checkpoint) NoFull(disk, *reader);
      for (const auto& [id, reader] : files.diffs) NoFull(disk, *reader);
      return;
    }
    for (const auto& [checkpoint, reader] : files.by_checkpoint) {
      Resolved(checkpoint, PointKind::kCheckpoint, checkpoint, disk,
               ChainTo(files, disk, checkpoint));
    }
    for (const auto& [id, reader] : files.diffs) {
      const std::string& parent = reader->meta().parent_checkpoint;
      Resolved(id, PointKind::kDiff, parent, disk, ChainTo(files, disk, parent, reader));
    }
  }

  void NoFull(const std::string& disk, const StreamReader& reader) {
    Damage(reader.path() + ": no full backup of disk " + disk + " to apply it to", "*", disk);
  }

  // Adds a resolved chain to its point, or reports why the point is unavailable.
  void Resolved(const std::string& point, PointKind kind, const std::string& anchor,
                const std::string& disk, Result<Chain> chain) {
    if (!chain.ok()) {
      Damage("restore point " + point + " unavailable: " + chain.status().message(), point, disk);
      return;
    }
    Add(point, kind, anchor, disk, std::move(chain).value());
  }

  OrderKey Key(const std::string& name, const std::vector<std::string>& order) const {
    const Placement& at = placements_.at(name);
    // Not listed (or a copy's empty anchor): after every listed checkpoint.
    const auto rank =
        static_cast<size_t>(std::find(order.begin(), order.end(), at.anchor) - order.begin());
    return {at.depth, rank, at.kind, at.time, name};
  }

  // A copy follows the deepest checkpoint whose date is not later than its own (rule 3 in
  // chain.h); with none, it comes first.
  void PlaceCopy() {
    auto copy = points_.find("copy");
    if (copy == points_.end() || placements_.at("copy").kind != PointKind::kCopy) return;
    Placement& at = placements_.at("copy");
    for (const auto& [name, placement] : placements_) {
      if (placement.kind != PointKind::kCheckpoint || points_.at(name).date > copy->second.date) {
        continue;
      }
      if (at.anchor.empty() || placement.depth > at.depth) {
        at.anchor = name;
        at.depth = placement.depth;
      }
    }
  }

  // Orders the points by the rule in chain.h; latest = the last one.
  void Finish(const std::vector<std::string>& order) {
    PlaceCopy();
    std::vector<std::pair<OrderKey, RestorePoint*>> sorted;
    for (auto& [name, p] : points_) {
      std::sort(p.disks.begin(), p.disks.end(),
                [](const DiskChain& a, const DiskChain& b) { return a.disk < b.disk; });
      sorted.emplace_back(Key(name, order), &p);
    }
    std::sort(sorted.begin(), sorted.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    for (auto& [key, p] : sorted) model_->points.push_back(std::move(*p));
    if (!model_->points.empty()) model_->latest = model_->points.back().name;
  }

  Storage& saveset_;
  const OpenOptions& options_;
  SavesetModel* model_;
  std::map<std::string, DiskFiles> disks_;
  std::map<std::string, RestorePoint> points_;
  std::map<std::string, Placement> placements_;  // by point name, beside points_
};

}  // namespace

namespace {

// Lists the saveset once when the caller has no listing: the model keeps it for whoever
// needs the saveset's other files (the restore planner), so nobody lists it again.
Result<SavesetModel> Load(std::shared_ptr<Storage> saveset, const OpenOptions& options,
                          const std::vector<StoredObject>* listed) {
  SavesetModel model;
  model.dir = saveset->address();
  model.storage = saveset;
  if (listed) {
    model.listing = *listed;
  } else {
    Result<std::vector<StoredObject>> own = saveset->List();
    if (!own.ok()) return own.status().WithPrefix("cannot read saveset " + saveset->address());
    model.listing = std::move(own).value();
  }
  BFS_RETURN_IF_ERROR(Resolver(*saveset, options, &model).Run(&*model.listing));
  return model;
}

}  // namespace

Result<SavesetModel> LoadSaveset(std::shared_ptr<Storage> saveset, const OpenOptions& options) {
  return Load(std::move(saveset), options, nullptr);
}

Result<SavesetModel> LoadSaveset(std::shared_ptr<Storage> saveset, const OpenOptions& options,
                                 const std::vector<StoredObject>& listed) {
  return Load(std::move(saveset), options, &listed);
}

Result<SavesetModel> LoadSaveset(const std::string& dir, const OpenOptions& options) {
  return LoadSaveset(std::shared_ptr<Storage>(OpenLocalStorage(dir)), options);
}

}  // namespace backupfs
