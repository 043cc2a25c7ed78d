#include "backupfs/backed_dir.h"

#include "backupfs/guest_tree.h"

#include <string.h>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <vector>

namespace backupfs {
namespace {

using Listing = Backing::Listing;

bool Later(const timespec& a, const timespec& b) {
  return a.tv_sec != b.tv_sec ? a.tv_sec > b.tv_sec : a.tv_nsec > b.tv_nsec;
}

bool IsBrokenChain(const std::string& name) { return name.rfind("broken-chain.", 0) == 0; }

// The entry `name` of `cur` when it still shows `key`, else a new node from `make`.
template <typename Make>
void Keep(const Listing* cur, Listing* out, const std::string& name, const std::string& key,
          Make make) {
  if (out->children.count(name)) return;  // the first one shown under a name wins
  if (cur != nullptr) {
    auto it = cur->children.find(name);
    if (it != cur->children.end() && it->second->key == key) {
      out->children[name] = it->second;
      return;
    }
  }
  out->children[name] = make();
}

std::shared_ptr<const Node> MakeLink(TreeShared* shared, uint64_t parent, const std::string& name,
                                     const std::string& target, const timespec& mtime) {
  auto n = std::make_shared<Node>();
  n->ino = shared->NewIno();
  n->parent = parent;
  n->kind = NodeKind::kSymlink;
  n->name = name;
  n->key = "l:" + target;
  n->target = target;
  n->size = target.size();
  n->mtime = mtime;
  return n;
}

std::shared_ptr<const Node> MakeDir(TreeShared* shared, uint64_t parent, const std::string& name,
                                    std::shared_ptr<Storage> storage, const StoreStamp& stamp) {
  auto n = std::make_shared<Node>();
  n->ino = shared->NewIno();
  n->parent = parent;
  n->name = name;
  n->key = "d:" + stamp.identity;
  n->mtime = stamp.mtime;
  n->backing = std::make_shared<Backing>(std::move(storage), n->ino, shared);
  return n;
}

std::shared_ptr<const Node> MakeFile(TreeShared* shared, uint64_t parent, const std::string& name,
                                     const std::shared_ptr<Storage>& store, const std::string& file,
                                     uint64_t size, const timespec& mtime) {
  auto n = std::make_shared<Node>();
  n->ino = shared->NewIno();
  n->parent = parent;
  n->kind = NodeKind::kFile;
  n->name = name;
  n->store = store;
  n->source = file;
  n->size = size;
  n->mtime = mtime;
  return n;
}

// A restore point's directory: one image per disk, then its per-point files.
std::shared_ptr<const Node> MakePoint(TreeShared* shared, uint64_t parent,
                                      const std::shared_ptr<LiveSaveset>& saveset,
                                      const SavesetState& state, const RestorePoint& p) {
  auto dir = std::make_shared<Node>();
  dir->ino = shared->NewIno();
  dir->parent = parent;
  dir->name = p.name;
  dir->key = "p:" + state.PointSignature(p);
  dir->mtime = ParseMetadataDate(p.date);
  for (const DiskChain& chain : p.disks) {
    auto n = std::make_shared<Node>();
    n->ino = shared->NewIno();
    n->parent = dir->ino;
    n->kind = NodeKind::kImage;
    n->name = chain.disk + ".raw";
    n->key = state.chains.at(p.name).at(chain.disk);
    n->size = chain.virtual_size;
    n->mtime = dir->mtime;
    n->saveset = saveset;
    n->point = p.name;
    n->disk = chain.disk;
    dir->files[n->name] = n;
    AddGuestDirs(shared, dir.get(), n);
  }
  for (const auto& [shown, file] : state.PointFiles(p.id)) {
    if (dir->files.count(shown)) continue;
    dir->files[shown] = MakeFile(shared, dir->ino, shown, saveset->storage(), file,
                                 state.files_listed.at(file), dir->mtime);
  }
  return dir;
}

// Non-dot subdirectories of `storage` (as `listed`), with their stamps.
std::vector<std::pair<std::string, StoreStamp>> Subdirectories(
    const Storage& storage, const Result<std::vector<StoredObject>>& listed) {
  std::vector<std::pair<std::string, StoreStamp>> out;
  if (!listed.ok()) return out;
  for (const StoredObject& o : *listed) {
    if (!o.is_dir() || o.name[0] == '.') continue;
    const std::string name = o.name.substr(0, o.name.size() - 1);
    out.emplace_back(name, storage.Stamp(name));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return out;
}

}  // namespace

std::shared_ptr<const Listing> Backing::Current() const {
  MutexLock l(mu_);
  return listing_;
}

std::shared_ptr<LiveSaveset> Backing::saveset() {
  MutexLock l(refresh_mu_);
  return saveset_;
}

std::shared_ptr<const Listing> Backing::Refresh() {
  MutexLock serial(refresh_mu_);
  std::shared_ptr<const Listing> cur = Current();
  const auto now = std::chrono::steady_clock::now();
  if (cur && now - last_ < shared_->poll_interval) return cur;
  last_ = now;
  // One look (on a store: one listing of the prefix); a local directory is listed only when
  // its look changed. An unchanged saveset costs that one look.
  DirLook look = LookAt(*storage_);
  const StoreStamp& stamp = look.stamp;
  const bool unchanged = saveset_ && saveset_stamp_ && stamp.exists && stamp == *saveset_stamp_ &&
                         stamp.identity == saveset_stamp_->identity && !stamp.racy;
  const Result<bool> saveset =
      unchanged ? Result<bool>(true) : LooksLikeSaveset(ListedBy(*storage_, &look));
  if (!saveset.ok()) {  // the store did not answer: what is shown stays, until it does
    ReportOnce(saveset.status().message() + "; showing what was there before");
    return cur;
  }
  last_error_.clear();
  saveset_stamp_.reset();
  if (*saveset && !stamp.racy) saveset_stamp_ = stamp;
  if (!*saveset && saveset_) {  // emptied or removed: close its data files now
    saveset_->Evict();
    saveset_.reset();
    seen_version_ = 0;
  }
  std::optional<Listing> next =
      *saveset ? SavesetListing(cur.get(), &look) : CollectionListing(cur.get(), &look);
  if (!next) return cur;
  auto listing = std::make_shared<const Listing>(std::move(*next));
  MutexLock l(mu_);
  listing_ = listing;
  return listing;
}

void Backing::ReportOnce(const std::string& message) {
  if (message == last_error_) return;  // a store that stays down is reported once
  last_error_ = message;
  if (shared_->report) shared_->report(message);
}

std::optional<Listing> Backing::SavesetListing(const Listing* cur, DirLook* look) {
  if (!saveset_) {
    LiveSaveset::Options o{shared_->open, &shared_->pool, shared_->report};
    saveset_ = std::make_shared<LiveSaveset>(storage_, o);
  }
  LiveSaveset::Snapshot snap = saveset_->Poll(look);
  if (cur && cur->saveset && snap.version == seen_version_) return std::nullopt;
  if (!snap.state) snap = saveset_->Loaded();
  seen_version_ = snap.version;
  const SavesetState& state = *snap.state;
  const std::shared_ptr<LiveSaveset> saveset = saveset_;
  Listing out;
  out.saveset = true;
  // The newest backup date (man backupfs(1)); the directory's own time while it has no point.
  out.mtime = state.model.points.empty() ? look->stamp.mtime : timespec{};
  for (const RestorePoint& p : state.model.points) {
    Keep(cur, &out, p.name, "p:" + state.PointSignature(p),
         [&] { return MakePoint(shared_, ino_, saveset, state, p); });
    out.mtime = std::max(out.mtime, ParseMetadataDate(p.date), Later);
  }
  for (const std::string& b : state.broken_chains) {
    const StoreStamp sub = storage_->Stamp(b);
    Keep(cur, &out, b, "d:" + sub.identity,
         [&] { return MakeDir(shared_, ino_, b, storage_->Sub(b), sub); });
  }
  if (!state.model.latest.empty()) {
    Keep(cur, &out, "latest", "l:" + state.model.latest,
         [&] { return MakeLink(shared_, ino_, "latest", state.model.latest, out.mtime); });
  }
  return out;
}

std::optional<Listing> Backing::CollectionListing(const Listing* cur, DirLook* look) {
  const StoreStamp& root = look->stamp;
  const std::vector<std::pair<std::string, StoreStamp>> subdirs =
      Subdirectories(*storage_, ListedBy(*storage_, look));
  std::string stamp = root.exists ? root.token : "-";
  bool racy = root.racy;
  for (const auto& [name, s] : subdirs) {
    stamp += "/" + name + "=" + (s.exists ? s.token : "-");
    racy = racy || s.racy;
  }
  if (cur && !cur->saveset && !collection_stamp_.empty() && stamp == collection_stamp_) {
    return std::nullopt;
  }
  collection_stamp_ = racy ? "" : stamp;
  Listing out;
  out.mtime = root.mtime;
  std::string latest;
  for (const auto& entry : subdirs) {
    const std::string& name = entry.first;
    const StoreStamp& s = entry.second;
    if (name == "latest") continue;
    const Result<bool> saveset = LooksLikeSaveset(*storage_, name);
    if (!saveset.ok()) {  // keep showing it (or not) as before, until the store answers
      ReportOnce(saveset.status().message() + "; showing what was there before");
      collection_stamp_.clear();
      const auto it = cur ? cur->children.find(name) : decltype(cur->children)::const_iterator{};
      if (!cur || it == cur->children.end()) continue;
      out.children[name] = it->second;
    } else if (!*saveset) {
      continue;
    }
    Keep(cur, &out, name, "d:" + s.identity,
         [&] { return MakeDir(shared_, ino_, name, storage_->Sub(name), s); });
    if (!IsBrokenChain(name) && (latest.empty() || strverscmp(name.c_str(), latest.c_str()) > 0)) {
      latest = name;
    }
  }
  if (!latest.empty()) {
    Keep(cur, &out, "latest", "l:" + latest,
         [&] { return MakeLink(shared_, ino_, "latest", latest, out.mtime); });
  }
  return out;
}

}  // namespace backupfs
