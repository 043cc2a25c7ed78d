#include "backupfs/chain.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

namespace backupfs {
namespace {

// The files of one disk, by role.
struct DiskFiles {
  std::shared_ptr<StreamReader> full;
  std::shared_ptr<StreamReader> copy;
  std::map<std::string, std::shared_ptr<StreamReader>> by_checkpoint;        // full + incs
  std::vector<std::pair<std::string, std::shared_ptr<StreamReader>>> diffs;  // id, reader
};

// The checkpoint list `<domain>.cpt`, when there is exactly one; used to order points.
std::vector<std::string> ReadCheckpointList(const std::string& dir,
                                            std::vector<std::string>* problems) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.path().extension() != ".cpt") continue;
    std::ifstream in(e.path());
    auto j = nlohmann::json::parse(in, nullptr, false);
    if (j.is_discarded() || !j.is_array()) {
      problems->push_back(e.path().string() + ": not a JSON list of checkpoints; ignored");
      continue;
    }
    for (const auto& name : j) {
      if (name.is_string()) out.push_back(name.get<std::string>());
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

// Follows parent links from `checkpoint` back to the full backup.
Result<std::vector<std::shared_ptr<StreamReader>>> ChainTo(const DiskFiles& files,
                                                           const std::string& disk,
                                                           const std::string& checkpoint) {
  std::vector<std::shared_ptr<StreamReader>> chain;
  std::set<std::string> seen;
  std::string at = checkpoint;
  for (;;) {
    auto it = files.by_checkpoint.find(at);
    if (it == files.by_checkpoint.end()) {
      return Status::NotFound("disk " + disk + ": no data file for checkpoint '" + at + "'" +
                              (chain.empty() ? "" : " (parent of " + chain.back()->path() + ")"));
    }
    if (!seen.insert(at).second) {
      return Status::Corruption("disk " + disk + ": checkpoint links loop at '" + at + "'");
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
  Resolver(const std::string& dir, const OpenOptions& options, SavesetModel* model)
      : dir_(dir), options_(options), model_(model) {}

  Status Run() {
    BFS_ASSIGN_OR_RETURN(SavesetListing listing, ListSaveset(dir_));
    for (const std::string& p : listing.partial_files) {
      model_->problems.push_back(dir_ + "/" + p + ": leftover of an interrupted backup; ignored");
    }
    for (const DataFileName& n : listing.data_files) Open(n);
    std::vector<std::string> order = ReadCheckpointList(dir_, &model_->problems);
    for (auto& [disk, files] : disks_) ResolveDisk(disk, files);
    Finish(order);
    return Status::Ok();
  }

 private:
  void Open(const DataFileName& n) {
    auto r = StreamReader::Open(dir_ + "/" + n.file, options_.reader);
    if (!r.ok()) {
      model_->problems.push_back(r.status().message());
      return;
    }
    std::shared_ptr<StreamReader> reader = std::move(r).value();
    if (!reader->index_problem().empty()) {
      model_->problems.push_back(reader->index_problem() + "; the index was rebuilt by scanning");
    }
    std::string mismatch = NameMismatch(n, *reader);
    if (!mismatch.empty()) {
      model_->problems.push_back(mismatch);
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
          model_->problems.push_back(reader->path() + ": checkpoint '" + n.id +
                                     "' is already the full backup's; ignored");
        }
        break;
      case BackupLevel::kDiff:
        files.diffs.emplace_back(n.id, reader);
        break;
    }
  }

  void Add(const std::string& point, const std::string& id, const std::string& disk,
           std::vector<std::shared_ptr<StreamReader>> chain) {
    // The name becomes a directory of the mount: it must be one, and not `latest`.
    if (point.empty() || point == "." || point == ".." || point == "latest" ||
        point.find('/') != std::string::npos || point.find('\0') != std::string::npos) {
      model_->problems.push_back(chain.back()->path() + ": restore point name '" + point +
                                 "' cannot be shown as a directory; skipped");
      return;
    }
    RestorePoint& p = points_[point];
    p.name = point;
    p.id = id;
    const StreamMetadata& newest = chain.back()->meta();
    p.date = std::max(p.date, newest.date);
    p.disks.push_back({disk, std::move(chain), newest.virtual_size});
  }

  void ResolveDisk(const std::string& disk, const DiskFiles& files) {
    if (files.copy) Add("copy", "copy", disk, {files.copy});
    for (const auto& [checkpoint, reader] : files.by_checkpoint) {
      if (!files.full) {
        model_->problems.push_back(reader->path() + ": no full backup of disk " + disk +
                                   " to apply it to");
        continue;
      }
      auto chain = ChainTo(files, disk, checkpoint);
      if (!chain.ok()) {
        model_->problems.push_back("restore point " + checkpoint +
                                   " unavailable: " + chain.status().message());
        continue;
      }
      Add(checkpoint, checkpoint, disk, std::move(chain).value());
    }
    for (const auto& [id, reader] : files.diffs) {
      auto chain = files.full ? ChainTo(files, disk, reader->meta().parent_checkpoint)
                              : Result<std::vector<std::shared_ptr<StreamReader>>>(
                                    Status::NotFound("no full backup of disk " + disk));
      if (!chain.ok()) {
        model_->problems.push_back("restore point " + id +
                                   " unavailable: " + chain.status().message());
        continue;
      }
      chain->push_back(reader);
      Add(id, id, disk, std::move(chain).value());
    }
  }

  // Orders points: those in the .cpt list in its order, then the rest by date; latest = newest.
  void Finish(const std::vector<std::string>& order) {
    for (auto& [name, p] : points_) {
      std::sort(p.disks.begin(), p.disks.end(),
                [](const DiskChain& a, const DiskChain& b) { return a.disk < b.disk; });
      model_->points.push_back(std::move(p));
    }
    auto rank = [&](const RestorePoint& p) {
      auto it = std::find(order.begin(), order.end(), p.name);
      return it == order.end() ? order.size() : static_cast<size_t>(it - order.begin());
    };
    std::stable_sort(model_->points.begin(), model_->points.end(),
                     [&](const RestorePoint& a, const RestorePoint& b) {
                       return std::make_tuple(a.date, rank(a), a.name) <
                              std::make_tuple(b.date, rank(b), b.name);
                     });
    if (!model_->points.empty()) model_->latest = model_->points.back().name;
  }

  const std::string dir_;
  const OpenOptions& options_;
  SavesetModel* model_;
  std::map<std::string, DiskFiles> disks_;
  std::map<std::string, RestorePoint> points_;
};

}  // namespace

Result<SavesetModel> LoadSaveset(const std::string& dir, const OpenOptions& options) {
  SavesetModel model;
  model.dir = dir;
  BFS_RETURN_IF_ERROR(Resolver(dir, options, &model).Run());
  return model;
}

}  // namespace backupfs
