#include "backupfs/tree.h"

#include "stream/local_storage.h"

namespace backupfs {
namespace {

std::shared_ptr<const Node> MakeRoot(std::shared_ptr<Storage> storage, TreeShared* shared) {
  auto n = std::make_shared<Node>();
  n->ino = 1;
  n->parent = 1;
  n->mtime = storage->Stamp().mtime;
  n->backing = std::make_shared<Backing>(std::move(storage), 1, shared);
  return n;
}

}  // namespace

LiveTree::LiveTree(const std::string& dir, const Options& o)
    : LiveTree(std::shared_ptr<Storage>(OpenLocalStorage(dir)), o) {}

LiveTree::LiveTree(std::shared_ptr<Storage> storage, const Options& o)
    : shared_(o.open, o.max_open_files, o.poll_interval, o.report),
      root_(MakeRoot(std::move(storage), &shared_)) {
  MutexLock l(mu_);
  held_[1] = {root_, 1};  // the root is never forgotten
}

std::shared_ptr<const Node> LiveTree::Get(uint64_t ino) const {
  MutexLock l(mu_);
  auto it = held_.find(ino);
  return it == held_.end() ? nullptr : it->second.node;
}

std::shared_ptr<const Node> LiveTree::Lookup(uint64_t parent, const std::string& name,
                                             Status* error) {
  std::shared_ptr<const Node> dir = Get(parent);
  if (!dir || dir->kind != NodeKind::kDir) return nullptr;
  std::shared_ptr<const Node> child;
  if (dir->lazy) {
    Result<std::shared_ptr<const Node>> found = dir->lazy->Lookup(*dir, name);
    if (!found.ok()) {
      if (error != nullptr) *error = found.status();
      return nullptr;
    }
    child = std::move(found).value();
  } else if (dir->backing) {
    std::shared_ptr<const Backing::Listing> listing = dir->backing->Refresh();
    auto it =
        listing ? listing->children.find(name) : decltype(listing->children)::const_iterator{};
    if (listing && it != listing->children.end()) child = it->second;
  } else if (auto it = dir->files.find(name); it != dir->files.end()) {
    child = it->second;
  }
  if (!child) return nullptr;
  MutexLock l(mu_);
  Held& h = held_[child->ino];
  h.node = child;
  ++h.lookups;
  return child;
}

void LiveTree::Forget(uint64_t ino, uint64_t nlookup) {
  std::shared_ptr<const Node> dropped;  // released outside the lock
  MutexLock l(mu_);
  auto it = held_.find(ino);
  if (ino == 1 || it == held_.end()) return;
  it->second.lookups -= std::min(nlookup, it->second.lookups);
  if (it->second.lookups == 0) {
    dropped = std::move(it->second.node);
    held_.erase(it);
  }
}

std::vector<LiveTree::Entry> LiveTree::List(const Node& dir, Status* error) {
  std::vector<Entry> out = {{".", dir.ino, NodeKind::kDir, 0},
                            {"..", dir.parent, NodeKind::kDir, 0}};
  if (dir.lazy) {
    Result<std::vector<Entry>> entries = dir.lazy->List(dir);
    if (!entries.ok()) {
      if (error != nullptr) *error = entries.status();
      return out;
    }
    for (Entry& e : entries.value()) out.push_back(std::move(e));
  } else if (dir.backing) {
    std::shared_ptr<const Backing::Listing> listing = dir.backing->Refresh();
    if (listing) {
      for (const auto& [name, n] : listing->children) out.push_back({name, n->ino, n->kind, 0});
    }
  } else {
    for (const auto& [name, n] : dir.files) out.push_back({name, n->ino, n->kind, 0});
  }
  return out;
}

struct timespec LiveTree::Mtime(const Node& n) const {
  if (n.backing) {
    if (auto listing = n.backing->Current()) return listing->mtime;
  }
  return n.mtime;
}

size_t LiveTree::held() const {
  MutexLock l(mu_);
  return held_.size();
}

}  // namespace backupfs
