#include "backupfs/tree.h"

#include <ctime>
#include <filesystem>
#include <set>

namespace backupfs {
namespace {

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() > suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::vector<std::string> ListNames(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.is_regular_file(ec)) out.push_back(e.path().filename().string());
  }
  return out;
}

// The name a per-point file shows under its point: "vmconfig.<id>.xml" -> "vmconfig.xml",
// "<disk>.<id>.qcow.json" -> "<disk>.qcow.json", "<name>.<id>" (firmware) -> "<name>";
// "" when `file` is not one of `id`'s files.
std::string PointFileName(const std::string& file, const std::string& id) {
  if (file == "vmconfig." + id + ".xml") return "vmconfig.xml";
  const std::string qcow = "." + id + ".qcow.json";
  if (EndsWith(file, qcow)) return file.substr(0, file.size() - qcow.size()) + ".qcow.json";
  const std::string suffix = "." + id;
  if (!EndsWith(file, suffix)) return "";
  return file.substr(0, file.size() - suffix.size());
}

}  // namespace

struct timespec ParseBackupDate(const std::string& iso) {
  std::tm tm = {};
  const char* rest = strptime(iso.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (rest == nullptr) return {};
  tm.tm_isdst = -1;
  struct timespec ts = {mktime(&tm), 0};
  if (*rest == '.') {
    double fraction = std::strtod(rest, nullptr);  // ".123456"
    if (fraction >= 0 && fraction < 1) ts.tv_nsec = static_cast<long>(fraction * 1e9);
  }
  return ts;
}

uint64_t MountTree::Add(uint64_t parent, NodeKind kind, const std::string& name,
                        struct timespec mtime) {
  Node n;
  n.ino = nodes_.size() + 1;
  n.parent = parent;
  n.kind = kind;
  n.name = name;
  n.mtime = mtime;
  nodes_.push_back(std::move(n));
  if (parent != 0 && nodes_.size() > 1) nodes_[parent - 1].children[name] = nodes_.size();
  return nodes_.size();
}

void MountTree::AddPointFiles(uint64_t dir, const std::string& saveset, const RestorePoint& point,
                              const std::vector<std::string>& names) {
  for (const std::string& file : names) {
    std::string shown = PointFileName(file, point.id);
    if (shown.empty() || nodes_[dir - 1].children.count(shown)) continue;
    std::error_code ec;
    uint64_t size = std::filesystem::file_size(saveset + "/" + file, ec);
    if (ec) continue;
    uint64_t ino = Add(dir, NodeKind::kFile, shown, nodes_[dir - 1].mtime);
    nodes_[ino - 1].source = saveset + "/" + file;
    nodes_[ino - 1].size = size;
  }
}

MountTree MountTree::Build(const SavesetModel& model) {
  MountTree t;
  struct timespec newest = {};
  for (const RestorePoint& p : model.points)
    newest = std::max(newest, ParseBackupDate(p.date),
                      [](const timespec& a, const timespec& b) { return a.tv_sec < b.tv_sec; });
  t.Add(0, NodeKind::kDir, "", newest);
  const std::vector<std::string> names = ListNames(model.dir);
  for (const RestorePoint& p : model.points) {
    uint64_t dir = t.Add(1, NodeKind::kDir, p.name, ParseBackupDate(p.date));
    for (const DiskChain& chain : p.disks) {
      uint64_t ino = t.Add(dir, NodeKind::kImage, chain.disk + ".raw", t.nodes_[dir - 1].mtime);
      t.nodes_[ino - 1].image = std::make_shared<LazyImage>(chain);
      t.nodes_[ino - 1].size = chain.virtual_size;
    }
    t.AddPointFiles(dir, model.dir, p, names);
  }
  if (!model.latest.empty()) {
    uint64_t ino = t.Add(1, NodeKind::kSymlink, "latest", newest);
    t.nodes_[ino - 1].target = model.latest;
    t.nodes_[ino - 1].size = model.latest.size();
  }
  return t;
}

const Node* MountTree::Get(uint64_t ino) const {
  if (ino == 0 || ino > nodes_.size()) return nullptr;
  return &nodes_[ino - 1];
}

const Node* MountTree::Lookup(uint64_t parent, const std::string& name) const {
  const Node* dir = Get(parent);
  if (dir == nullptr || dir->kind != NodeKind::kDir) return nullptr;
  auto it = dir->children.find(name);
  return it == dir->children.end() ? nullptr : Get(it->second);
}

uint64_t MountTree::extent_count() const {
  uint64_t n = 0;
  for (const Node& node : nodes_) {
    if (node.image) n += node.image->Get().extents().size();
  }
  return n;
}

}  // namespace backupfs
