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

FileIdentity IdentityOf(const struct stat& st) {
  return {st.st_dev, st.st_ino, st.st_size, st.st_mtim};
}

// The regular files and the broken-chain.* savesets of `dir`.
void ListDirectory(const std::string& dir, SavesetState* state) {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (e.is_regular_file(ec)) {
      state->names.push_back(name);
    } else if (e.is_directory(ec) && name.rfind("broken-chain.", 0) == 0 &&
               LooksLikeSaveset(e.path().string())) {
      state->broken_chains.push_back(name);
    }
  }
  std::sort(state->names.begin(), state->names.end());
  std::sort(state->broken_chains.begin(), state->broken_chains.end());
}

// Readers of `prev` whose file is still the one they opened.
std::shared_ptr<StreamReader> Reuse(const SavesetState* prev, const std::string& path) {
  if (prev == nullptr) return nullptr;
  auto it = prev->files.find(path);
  struct stat st {};
  if (it == prev->files.end() || stat(path.c_str(), &st) != 0) return nullptr;
  return IdentityOf(st) == it->second.id ? it->second.reader : nullptr;
}

// Records a chain's files, its signature and its image (the previous one when unchanged).
void AddChain(const RestorePoint& p, const DiskChain& chain, const SavesetState* prev,
              SavesetState* state) {
  std::string signature;
  for (const std::shared_ptr<StreamReader>& r : chain.files) {
    SavesetState::OpenedFile f{r, {}};
    auto old = prev ? prev->files.find(r->path()) : decltype(prev->files)::const_iterator{};
    if (prev && old != prev->files.end() && old->second.reader == r) {
      f.id = old->second.id;  // reused: the identity it was opened with
    } else {
      struct stat st {};
      if (fstat(r->fd(), &st) == 0) f.id = IdentityOf(st);
    }
    signature += (signature.empty() ? "" : ",") + f.id.ToString();
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

std::shared_ptr<SavesetState> BuildState(const std::string& dir, OpenOptions options,
                                         const std::shared_ptr<const SavesetState>& prev) {
  auto state = std::make_shared<SavesetState>();
  options.reuse = [prev](const std::string& path) { return Reuse(prev.get(), path); };
  auto model = LoadSaveset(dir, options);
  if (model.ok()) {
    state->model = std::move(model).value();
  } else {
    state->model.dir = dir;
    state->model.problems.push_back(model.status().message());
    state->failed = true;
  }
  state->whole = !state->failed && state->model.damage.empty();
  for (const RestorePoint& p : state->model.points) {
    for (const DiskChain& chain : p.disks) AddChain(p, chain, prev.get(), state.get());
  }
  ListDirectory(dir, state.get());
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

std::string FileIdentity::ToString() const {
  return std::to_string(dev) + ":" + std::to_string(ino) + ":" + std::to_string(size) + ":" +
         std::to_string(mtime.tv_sec) + "." + std::to_string(mtime.tv_nsec);
}

std::string DirStamp::ToString() const {
  if (!exists) return "-";
  return std::to_string(dev) + ":" + std::to_string(ino) + ":" + std::to_string(mtime.tv_sec) +
         "." + std::to_string(mtime.tv_nsec);
}

DirStamp StampOf(const std::string& dir) {
  struct stat st {};
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return {};
  return {true, st.st_dev, st.st_ino, st.st_mtim};
}

bool Racy(const DirStamp& stamp) {
  struct timespec now {};
  clock_gettime(CLOCK_REALTIME, &now);
  return stamp.exists && stamp.mtime.tv_sec + 2 >= now.tv_sec;
}

bool LooksLikeSaveset(const std::string& dir) {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if ((EndsWith(name, ".data") || EndsWith(name, ".cpt")) && e.is_regular_file(ec)) return true;
  }
  return false;
}

const RestorePoint* SavesetState::Find(const std::string& point) const {
  for (const RestorePoint& p : model.points) {
    if (p.name == point) return &p;
  }
  return nullptr;
}

std::map<std::string, std::string> SavesetState::PointFiles(const std::string& id) const {
  std::map<std::string, std::string> out;
  for (const std::string& file : names) {
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
  MutexLock load(load_mu_);
  const DirStamp stamp = StampOf(dir_);
  {
    MutexLock l(mu_);
    if (version_ != 0 && trusted_ && stamp == stamp_) return {version_, state_};
  }
  const bool busy = SavesetBusy(dir_);
  if (busy && Current().version != 0) return Current();  // the writer's result, once done
  return LoadLocked(stamp, busy);
}

LiveSaveset::Snapshot LiveSaveset::Loaded() {
  MutexLock load(load_mu_);
  Snapshot now = Current();
  if (now.state) return now;
  return LoadLocked(StampOf(dir_), SavesetBusy(dir_));
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
    return Status::NotFound(dir_ + ": restore point " + point + " (disk " + disk +
                            ") was removed or changed since it was looked up");
  }
  return state->images.at(point).at(disk);
}

void LiveSaveset::Evict() {
  std::shared_ptr<const SavesetState> dropped;  // released outside the lock
  MutexLock l(mu_);
  dropped = std::move(state_);
}

LiveSaveset::Snapshot LiveSaveset::LoadLocked(const DirStamp& stamp, bool busy) {
  std::shared_ptr<const SavesetState> prev = Current().state;
  std::shared_ptr<SavesetState> state = BuildState(dir_, options_.open, prev);
  // A writer that took the lock while we listed may have left a point half written.
  busy = busy || SavesetBusy(dir_);
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
    trusted_ = !busy && !Racy(stamp) && state->whole;
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
