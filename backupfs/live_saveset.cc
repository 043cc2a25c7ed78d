#include "backupfs/live_saveset.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <ctime>
#include <filesystem>

#include "backupfs/saveset_pool.h"
#include "stream/dir_lock.h"

namespace backupfs {
namespace {

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() > suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The files and the broken-chain.* savesets of the saveset, from its listing.
void ListFiles(const Storage& storage, const std::vector<StoredObject>& listed,
               SavesetState* state) {
  for (const StoredObject& o : listed) {
    if (!o.is_dir()) {
      state->files_listed[o.name] = o.size;
    } else if (o.name.rfind("broken-chain.", 0) == 0) {
      // One that cannot be listed now is kept: it was set aside as a saveset, and a store that
      // does not answer for a moment must not make it vanish from the mount.
      const Result<bool> saveset = LooksLikeSaveset(storage, o.name);
      if (!saveset.ok() || *saveset) {
        state->broken_chains.push_back(o.name.substr(0, o.name.size() - 1));
      }
    }
  }
  std::sort(state->broken_chains.begin(), state->broken_chains.end());
}

// Readers of `prev` whose file is still the one they opened (the listing's version).
std::shared_ptr<StreamReader> Reuse(const SavesetState* prev, const std::string& path,
                                    const std::string& version) {
  if (prev == nullptr) return nullptr;
  auto it = prev->files.find(path);
  if (it == prev->files.end() || version.empty()) return nullptr;
  return version == it->second.version ? it->second.reader : nullptr;
}

// Records a chain's files, its signature and its image (the previous one when unchanged).
void AddChain(const RestorePoint& p, const DiskChain& chain, const SavesetState* prev,
              SavesetState* state) {
  std::string signature;
  for (const std::shared_ptr<StreamReader>& r : chain.files) {
    SavesetState::OpenedFile f{r, r->file().version()};
    signature += (signature.empty() ? "" : ",") + f.version;
    state->files.emplace(r->path(), std::move(f));
  }
  state->chains[p.name][chain.disk] = signature;
  std::shared_ptr<LazyImage> image;
  if (prev && prev->chains.count(p.name) && prev->chains.at(p.name).count(chain.disk) &&
      prev->chains.at(p.name).at(chain.disk) == signature) {
    image = prev->images.at(p.name).at(chain.disk);
  }
  state->images[p.name][chain.disk] = image ? image : std::make_shared<LazyImage>(chain);
}

// Loads from `listed`, a listing of the saveset (or the error its listing gave).
std::shared_ptr<SavesetState> BuildState(const std::shared_ptr<Storage>& storage,
                                         OpenOptions options,
                                         const std::shared_ptr<const SavesetState>& prev,
                                         const Result<std::vector<StoredObject>>& listed) {
  auto state = std::make_shared<SavesetState>();
  options.reuse = [prev](const std::string& path, const std::string& version) {
    return Reuse(prev.get(), path, version);
  };
  Result<SavesetModel> model = listed.ok() ? LoadSaveset(storage, options, *listed)
                                           : Result<SavesetModel>(listed.status().WithPrefix(
                                                 "cannot read saveset " + storage->address()));
  if (model.ok()) {
    state->model = std::move(model).value();
  } else {
    state->model.dir = storage->address();
    state->model.storage = storage;
    state->model.problems.push_back(model.status().message());
    state->failed = true;
  }
  state->whole = !state->failed && state->model.damage.empty();
  for (const RestorePoint& p : state->model.points) {
    for (const DiskChain& chain : p.disks) AddChain(p, chain, prev.get(), state.get());
  }
  if (listed.ok()) ListFiles(*storage, *listed, state.get());
  return state;
}

std::set<std::string> DiskSet(const RestorePoint& p) {
  std::set<std::string> out;
  for (const DiskChain& c : p.disks) out.insert(c.disk);
  return out;
}

// While a writer holds the saveset: keeps only the points shown before (`shown`), or on a
// first load drops each point that has fewer disks than the one before it (a multi-disk point
// whose last disks are still being written).
void Withhold(SavesetState* state, const std::set<std::string>* shown) {
  std::vector<RestorePoint>& points = state->model.points;
  std::vector<RestorePoint> kept;
  for (size_t i = 0; i < points.size(); ++i) {
    bool keep = shown ? shown->count(points[i].name) > 0 : true;
    if (!shown && i > 0) {
      const std::set<std::string> before = DiskSet(points[i - 1]), now = DiskSet(points[i]);
      keep = !(now.size() < before.size() &&
               std::includes(before.begin(), before.end(), now.begin(), now.end()));
    }
    if (keep) {
      kept.push_back(std::move(points[i]));
    } else {
      state->images.erase(points[i].name);
      state->chains.erase(points[i].name);
    }
  }
  points = std::move(kept);
  state->model.latest = points.empty() ? "" : points.back().name;
}

}  // namespace

Result<bool> LooksLikeSaveset(const Storage& storage, std::string_view dir) {
  return LooksLikeSaveset(storage.List(dir));
}

Result<bool> LooksLikeSaveset(const Result<std::vector<StoredObject>>& listed) {
  if (!listed.ok()) {
    if (listed.status().code() == StatusCode::kNotFound) return false;
    return listed.status();
  }
  for (const StoredObject& o : *listed) {
    if (!o.is_dir() && (EndsWith(o.name, ".data") || EndsWith(o.name, ".cpt"))) return true;
  }
  return false;
}

DirLook LookAt(const Storage& storage) {
  DirLook look;
  if (storage.LocalDir()) {
    look.stamp = storage.Stamp();
    return look;
  }
  look.listed = storage.List();
  if (look.listed->ok()) look.stamp = StampOfListing(storage.Describe(""), **look.listed);
  return look;
}

const Result<std::vector<StoredObject>>& ListedBy(const Storage& storage, DirLook* look) {
  if (!look->listed) look->listed = storage.List();
  return *look->listed;
}

const RestorePoint* SavesetState::Find(const std::string& point) const {
  for (const RestorePoint& p : model.points) {
    if (p.name == point) return &p;
  }
  return nullptr;
}

std::map<std::string, std::string> SavesetState::PointFiles(const std::string& id) const {
  std::map<std::string, std::string> out;
  for (const auto& [file, size] : files_listed) {
    std::string shown = PointFileShownName(file, id);
    if (!shown.empty()) out.emplace(shown, file);  // names are sorted: the first one wins
  }
  return out;
}

std::string SavesetState::PointSignature(const RestorePoint& p) const {
  std::string out;
  for (const auto& [disk, chain] : chains.at(p.name)) out += disk + "=" + chain + ";";
  for (const auto& [shown, file] : PointFiles(p.id)) out += shown + "<" + file + ";";
  return out;
}

std::string SavesetState::ContentSignature() const {
  std::string out;
  for (const RestorePoint& p : model.points) out += p.name + "{" + PointSignature(p) + "}";
  out += "latest=" + model.latest;
  for (const std::string& b : broken_chains) out += " " + b;
  return out;
}

LiveSaveset::Snapshot LiveSaveset::Current() {
  MutexLock l(mu_);
  return {version_, state_};
}

LiveSaveset::Snapshot LiveSaveset::Poll() {
  DirLook look = LookAt(*storage_);
  return Poll(&look);
}

LiveSaveset::Snapshot LiveSaveset::Poll(DirLook* look) {
  MutexLock load(load_mu_);
  {
    MutexLock l(mu_);
    if (version_ != 0 && trusted_ && look->stamp == stamp_) return {version_, state_};
  }
  return LoadLocked(look);
}

LiveSaveset::Snapshot LiveSaveset::Loaded() {
  MutexLock load(load_mu_);
  Snapshot now = Current();
  if (now.state) return now;
  DirLook look = LookAt(*storage_);
  return LoadLocked(&look);
}

Result<std::shared_ptr<LazyImage>> LiveSaveset::Image(const std::string& point,
                                                      const std::string& disk,
                                                      const std::string& chain) {
  // A state already loaded serves without waiting for a reload in progress (load_mu_).
  Snapshot now = Current();
  if (!now.state) now = Loaded();
  std::shared_ptr<const SavesetState> state = now.state;
  if (options_.pool) options_.pool->Used(shared_from_this(), state->files.size());
  auto p = state->chains.find(point);
  if (p == state->chains.end() || !p->second.count(disk) || p->second.at(disk) != chain) {
    return Status::NotFound(dir() + ": restore point " + point + " (disk " + disk +
                            ") was removed or changed since it was looked up");
  }
  return state->images.at(point).at(disk);
}

void LiveSaveset::Evict() {
  std::shared_ptr<const SavesetState> dropped;  // released outside the lock
  MutexLock l(mu_);
  dropped = std::move(state_);
}

LiveSaveset::Snapshot LiveSaveset::LoadLocked(DirLook* look) {
  const StoreStamp& stamp = look->stamp;
  std::shared_ptr<const SavesetState> prev = Current().state;
  std::shared_ptr<SavesetState> state =
      BuildState(storage_, options_.open, prev, ListedBy(*storage_, look));
  // A writer that held the lock while we listed may have left a point half written: it
  // still holds it now, or it has finished and changed the stamp, and the next poll loads
  // its result. Looked at after the load, once.
  const bool busy = storage_->Busy();
  if (busy && prev) {  // what was shown stays, until the writer is done
    MutexLock l(mu_);
    return {version_, state_ ? state_ : prev};
  }
  if (state->failed && prev) {  // keep what was shown; try again at the next poll
    Report(*state);
    MutexLock l(mu_);
    trusted_ = false;
    return {version_, state_ ? state_ : prev};
  }
  {
    MutexLock l(mu_);
    if (busy) Withhold(state.get(), version_ != 0 ? &shown_ : nullptr);
  }
  Report(*state);
  const std::string content = state->ContentSignature();
  Snapshot installed;
  {
    MutexLock l(mu_);
    state_ = state;
    if (version_ == 0 || content != content_) ++version_;
    content_ = content;
    stamp_ = stamp;
    trusted_ = !busy && !stamp.racy && state->whole;
    shown_.clear();
    for (const RestorePoint& p : state->model.points) shown_.insert(p.name);
    installed = {version_, state};
  }
  if (options_.pool) options_.pool->Used(shared_from_this(), state->files.size());
  return installed;
}

void LiveSaveset::Report(const SavesetState& state) {
  std::vector<std::string> fresh;
  {
    MutexLock l(mu_);
    for (const std::string& m : state.model.problems) {
      if (reported_.insert(m).second) fresh.push_back(m);
    }
  }
  if (options_.report) {
    for (const std::string& m : fresh) options_.report(m);
  }
}

}  // namespace backupfs
