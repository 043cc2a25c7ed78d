#include "backupfs/guest_tree.h"

#include <sys/stat.h>

#include <map>
#include <unordered_map>

#include "backupfs/image_source.h"
#include "backupfs/live_saveset.h"

namespace backupfs {
namespace {

// Guest inode numbers: the top bit, then the volume's number, then the guest's own number.
constexpr uint64_t kGuestInoBit = uint64_t{1} << 63;
constexpr int kGuestInoBits = 39;  // ext4's are 32-bit, NTFS's MFT records far below 2^39
constexpr uint64_t kMaxVolumes = uint64_t{1} << (63 - kGuestInoBits);

std::shared_ptr<Node> NewNode(TreeShared* shared, uint64_t parent, std::string name, NodeKind kind,
                              const timespec& mtime) {
  auto n = std::make_shared<Node>();
  n->ino = shared->NewIno();
  n->parent = parent;
  n->kind = kind;
  n->name = std::move(name);
  n->mtime = mtime;
  return n;
}

// A name for a directory entry: blkid's types have no '/', but a hostile label must not make
// one.
std::string EntryName(std::string s) {
  for (char& c : s) {
    if (c == '/' || c == '\0') c = '_';
  }
  return s;
}

void Report(TreeShared* shared, const std::string& message) {
  if (shared->report) shared->report(message);
}

mode_t TypeOf(const GuestAttr& a) { return a.mode & S_IFMT; }

class GuestDir;

// The node of guest inode `attr.ino` in directory `parent`.
Result<std::shared_ptr<const Node>> MakeGuestNode(const std::shared_ptr<GuestVolume>& volume,
                                                  GuestFs& fs, const GuestAttr& attr,
                                                  uint64_t parent, const std::string& name);

// A directory of a guest filesystem: its entries read once, on first use, and kept while the
// kernel holds the directory.
class GuestDir final : public LazyDir {
 public:
  GuestDir(std::shared_ptr<GuestVolume> volume, uint64_t guest_ino)
      : volume_(std::move(volume)), guest_ino_(guest_ino) {}

  Result<std::vector<DirEntry>> List(const Node&) override {
    BFS_ASSIGN_OR_RETURN(std::shared_ptr<const Listing> listing, Get());
    std::vector<DirEntry> out;
    out.reserve(listing->entries.size());
    for (const GuestDirEntry& e : listing->entries) {
      BFS_ASSIGN_OR_RETURN(uint64_t ino, volume_->InoOf(e.ino));
      NodeKind kind = e.type == S_IFDIR   ? NodeKind::kDir
                      : e.type == S_IFLNK ? NodeKind::kSymlink
                                          : NodeKind::kGuest;
      out.push_back({e.name, ino, kind, e.type});
    }
    return out;
  }

  Result<std::shared_ptr<const Node>> Lookup(const Node& self, const std::string& name) override {
    BFS_ASSIGN_OR_RETURN(std::shared_ptr<const Listing> listing, Get());
    auto it = listing->by_name.find(name);
    if (it == listing->by_name.end()) return std::shared_ptr<const Node>();
    BFS_ASSIGN_OR_RETURN(GuestFs * fs, volume_->Fs());
    BFS_ASSIGN_OR_RETURN(GuestAttr attr, fs->Stat(listing->entries[it->second].ino));
    return MakeGuestNode(volume_, *fs, attr, self.ino, name);
  }

 private:
  struct Listing {
    std::vector<GuestDirEntry> entries;
    std::unordered_map<std::string, size_t> by_name;
  };

  // Errors are not kept: the next call reads again.
  Result<std::shared_ptr<const Listing>> Get() EXCLUDES(mu_) {
    MutexLock l(mu_);
    if (listing_) return listing_;
    BFS_ASSIGN_OR_RETURN(GuestFs * fs, volume_->Fs());
    auto listing = std::make_shared<Listing>();
    BFS_ASSIGN_OR_RETURN(listing->entries, fs->ReadDir(guest_ino_));
    listing->by_name.reserve(listing->entries.size());
    for (size_t i = 0; i < listing->entries.size(); ++i) {
      listing->by_name.emplace(listing->entries[i].name, i);  // a duplicate name: the first wins
    }
    listing_ = std::move(listing);
    return listing_;
  }

  const std::shared_ptr<GuestVolume> volume_;
  const uint64_t guest_ino_;
  Mutex mu_;
  std::shared_ptr<const Listing> listing_ GUARDED_BY(mu_);
};

Result<std::shared_ptr<const Node>> MakeGuestNode(const std::shared_ptr<GuestVolume>& volume,
                                                  GuestFs& fs, const GuestAttr& attr,
                                                  uint64_t parent, const std::string& name) {
  auto n = std::make_shared<Node>();
  BFS_ASSIGN_OR_RETURN(n->ino, volume->InoOf(attr.ino));
  n->parent = parent;
  n->name = name;
  n->size = attr.size;
  n->mtime = attr.mtime;
  auto guest = std::make_shared<GuestNode>();
  guest->volume = volume;
  guest->attr = attr;
  n->guest = std::move(guest);
  if (TypeOf(attr) == S_IFDIR) {
    n->kind = NodeKind::kDir;
    n->lazy = std::make_shared<GuestDir>(volume, attr.ino);
  } else if (TypeOf(attr) == S_IFLNK) {
    n->kind = NodeKind::kSymlink;
    BFS_ASSIGN_OR_RETURN(n->target, fs.ReadLink(attr.ino));
  } else {
    n->kind = NodeKind::kGuest;
  }
  return std::shared_ptr<const Node>(std::move(n));
}

// What a disk at a point holds, probed on first use.
class GuestDisk {
 public:
  GuestDisk(TreeShared* shared, std::shared_ptr<const Node> image, uint64_t parts_ino,
            uint64_t files_ino)
      : shared_(shared), image_(std::move(image)), parts_ino_(parts_ino), files_ino_(files_ino) {}

  struct State {
    std::shared_ptr<const ByteSource> disk;
    std::map<std::string, std::shared_ptr<const Node>> parts;     // partition files, `blkid`
    std::map<std::string, std::shared_ptr<GuestVolume>> volumes;  // filesystems read here
    std::map<std::string, std::shared_ptr<const Node>> links;     // filesystems not read here
  };

  // The disk's state, probed by the first call. A probe that could not read the disk is not
  // kept: the next call tries again.
  Result<std::shared_ptr<const State>> Get() EXCLUDES(mu_) {
    MutexLock l(mu_);
    if (state_) return state_;
    BFS_ASSIGN_OR_RETURN(state_, Probe());
    return state_;
  }

  uint64_t files_ino() const { return files_ino_; }

 private:
  Result<std::shared_ptr<const State>> Probe() {
    const Node& img = *image_;
    BFS_ASSIGN_OR_RETURN(std::shared_ptr<LazyImage> lazy,
                         img.saveset->Image(img.point, img.disk, img.key));
    const std::string at = " at " + img.point;
    auto state = std::make_shared<State>();
    state->disk = std::make_shared<ImageSource>(std::move(lazy), img.disk + at);
    BFS_ASSIGN_OR_RETURN(DiskLayout layout, ProbeDisk(*state->disk));
    for (const std::string& problem : layout.problems) Report(shared_, problem);

    auto listing = NewNode(shared_, parts_ino_, "blkid", NodeKind::kText, img.mtime);
    listing->text = DescribeLayout(layout);
    listing->size = listing->text.size();
    state->parts["blkid"] = std::move(listing);
    for (const Partition& p : layout.partitions) AddPartition(p, at, state.get());
    return std::shared_ptr<const State>(std::move(state));
  }

  void AddPartition(const Partition& p, const std::string& at, State* state) {
    const Node& img = *image_;
    const bool whole = p.number == 0;
    const std::string name = whole ? "disk" : std::to_string(p.number);
    std::shared_ptr<const ByteSource> bytes = state->disk;
    if (!whole) {
      auto part = NewNode(shared_, parts_ino_, name, NodeKind::kPartition, img.mtime);
      part->bytes = std::make_shared<SliceSource>(state->disk, p.offset, p.size,
                                                  img.disk + " partition " + name + at);
      part->size = p.size;
      part->xattrs = BlkidXattrs(p);
      bytes = part->bytes;
      state->parts[name] = std::move(part);
    }
    if (p.container || p.type.empty()) return;
    if (GuestFsReadable(p.type)) {
      const std::string where =
          img.disk + (whole ? "" : " partition " + name) + " (" + p.type + ")" + at;
      state->volumes[name] = std::make_shared<GuestVolume>(shared_, where, p.type, bytes);
      return;
    }
    const std::string link = EntryName(name + "." + p.type);
    auto n = NewNode(shared_, files_ino_, link, NodeKind::kSymlink, img.mtime);
    n->target = whole ? "../" + img.name : "../" + img.disk + ".parts/" + name;
    n->size = n->target.size();
    state->links[link] = std::move(n);
  }

  static std::map<std::string, std::string> BlkidXattrs(const Partition& p) {
    const std::pair<const char*, const std::string*> fields[] = {
        {"TYPE", &p.type},
        {"LABEL", &p.label},
        {"UUID", &p.uuid},
        {"VERSION", &p.version},
        {"PART_ENTRY_TYPE", &p.entry_type},
        {"PART_ENTRY_NAME", &p.entry_name},
        {"PART_ENTRY_UUID", &p.entry_uuid}};
    std::map<std::string, std::string> out;
    for (const auto& [key, value] : fields) {
      if (!value->empty()) out[std::string("user.blkid.") + key] = *value;
    }
    return out;
  }

  TreeShared* const shared_;
  const std::shared_ptr<const Node> image_;
  const uint64_t parts_ino_, files_ino_;
  Mutex mu_;
  std::shared_ptr<const State> state_ GUARDED_BY(mu_);
};

// <disk>.parts: the partition files and the listing.
class PartsDir final : public LazyDir {
 public:
  explicit PartsDir(std::shared_ptr<GuestDisk> disk) : disk_(std::move(disk)) {}

  Result<std::vector<DirEntry>> List(const Node&) override {
    BFS_ASSIGN_OR_RETURN(std::shared_ptr<const GuestDisk::State> state, disk_->Get());
    std::vector<DirEntry> out;
    for (const auto& [name, n] : state->parts) out.push_back({name, n->ino, n->kind, 0});
    return out;
  }

  Result<std::shared_ptr<const Node>> Lookup(const Node&, const std::string& name) override {
    BFS_ASSIGN_OR_RETURN(std::shared_ptr<const GuestDisk::State> state, disk_->Get());
    auto it = state->parts.find(name);
    return it == state->parts.end() ? nullptr : it->second;
  }

 private:
  const std::shared_ptr<GuestDisk> disk_;
};

// <disk>.files: a directory per filesystem read here, a link per one that is not.
class FilesDir final : public LazyDir {
 public:
  explicit FilesDir(std::shared_ptr<GuestDisk> disk) : disk_(std::move(disk)) {}

  Result<std::vector<DirEntry>> List(const Node&) override {
    BFS_ASSIGN_OR_RETURN(std::shared_ptr<const GuestDisk::State> state, disk_->Get());
    std::vector<DirEntry> out;
    for (const auto& [name, volume] : state->volumes) {
      // A filesystem that cannot be opened is still listed: looking into it says why.
      Result<GuestFs*> fs = volume->Fs();
      Result<uint64_t> ino = volume->InoOf(fs.ok() ? (*fs)->root() : 0);
      out.push_back({name, ino.ok() ? *ino : 0, NodeKind::kDir, 0});
    }
    for (const auto& [name, n] : state->links) out.push_back({name, n->ino, n->kind, 0});
    return out;
  }

  Result<std::shared_ptr<const Node>> Lookup(const Node& self, const std::string& name) override {
    BFS_ASSIGN_OR_RETURN(std::shared_ptr<const GuestDisk::State> state, disk_->Get());
    if (auto it = state->links.find(name); it != state->links.end()) return it->second;
    auto it = state->volumes.find(name);
    if (it == state->volumes.end()) return std::shared_ptr<const Node>();
    BFS_ASSIGN_OR_RETURN(GuestFs * fs, it->second->Fs());
    BFS_ASSIGN_OR_RETURN(GuestAttr root, fs->Stat(fs->root()));
    return MakeGuestNode(it->second, *fs, root, self.ino, name);
  }

 private:
  const std::shared_ptr<GuestDisk> disk_;
};

}  // namespace

Result<GuestFs*> GuestVolume::Fs() {
  MutexLock l(mu_);
  if (!tried_) {
    tried_ = true;
    Result<std::unique_ptr<GuestFs>> fs = OpenGuestFs(type_, device_);
    if (fs.ok()) {
      fs_ = std::move(fs).value();
      for (const std::string& note : fs_->Notes()) Report(shared_, where_ + ": " + note);
    } else {
      failed_ = fs.status();
      Report(shared_, failed_.message());
    }
  }
  if (fs_) return fs_.get();
  return failed_;
}

Result<uint64_t> GuestVolume::InoOf(uint64_t guest_ino) const {
  if (id_ >= kMaxVolumes) {
    return Status::FailedPrecondition(where_ + ": more guest filesystems opened than one mount " +
                                      "can number; remount");
  }
  if (guest_ino >> kGuestInoBits) {
    return Status::Corruption(where_ + ": inode number " + std::to_string(guest_ino) +
                              " is too large to show");
  }
  return kGuestInoBit | (id_ << kGuestInoBits) | guest_ino;
}

void AddGuestDirs(TreeShared* shared, Node* point, const std::shared_ptr<const Node>& image) {
  auto parts = NewNode(shared, point->ino, image->disk + ".parts", NodeKind::kDir, point->mtime);
  auto files = NewNode(shared, point->ino, image->disk + ".files", NodeKind::kDir, point->mtime);
  auto disk = std::make_shared<GuestDisk>(shared, image, parts->ino, files->ino);
  parts->lazy = std::make_shared<PartsDir>(disk);
  files->lazy = std::make_shared<FilesDir>(disk);
  point->files.emplace(parts->name, std::move(parts));
  point->files.emplace(files->name, std::move(files));
}

}  // namespace backupfs
