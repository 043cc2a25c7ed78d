// libFuzzer target: the input is a filesystem image, opened as ext4 and as NTFS (each reader
// rejects what is not its own), then walked breadth-first with bounds: every entry is
// stat'ed, symlinks read, regular files opened and read (first 64 KiB), xattrs listed, and
// their data and holes sought.
#include <sys/stat.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <set>
#include <utility>
#include <vector>

#include "guest/guest_fs.h"

using namespace backupfs;

namespace {

constexpr int kMaxDepth = 16;
constexpr size_t kMaxEntries = 2000;
constexpr uint64_t kMaxRead = 64 * 1024;

void ReadFile(GuestFs& fs, uint64_t ino) {
  Result<std::shared_ptr<const GuestFile>> file = fs.Open(ino);
  if (!file.ok()) return;
  const GuestFile& f = **file;
  std::vector<uint8_t> bytes(std::min<uint64_t>(f.size(), kMaxRead));
  (void)f.Read(0, bytes);
  // A few steps of SEEK_DATA / SEEK_HOLE, each of which must move forward.
  uint64_t at = 0;
  for (int i = 0; i < 64 && at < f.size(); ++i) {
    const uint64_t data = f.NextData(at);
    if (data > f.size() || data < at) __builtin_trap();
    if (data >= f.size()) break;
    const uint64_t hole = f.NextHole(data);
    if (hole > f.size() || hole <= data) __builtin_trap();
    at = hole;
  }
}

void Visit(GuestFs& fs, uint64_t ino) {
  Result<GuestAttr> attr = fs.Stat(ino);
  (void)fs.Xattrs(ino);
  if (!attr.ok()) return;
  if (S_ISLNK(attr->mode)) (void)fs.ReadLink(ino);
  if (S_ISREG(attr->mode)) ReadFile(fs, ino);
}

void Walk(GuestFs& fs) {
  std::deque<std::pair<uint64_t, int>> queue{{fs.root(), 0}};
  std::set<uint64_t> seen{fs.root()};
  size_t entries = 0;
  (void)fs.Notes();
  Visit(fs, fs.root());
  while (!queue.empty() && entries < kMaxEntries) {
    auto [dir, depth] = queue.front();
    queue.pop_front();
    Result<std::vector<GuestDirEntry>> list = fs.ReadDir(dir);
    if (!list.ok()) continue;
    for (const GuestDirEntry& e : *list) {
      if (++entries > kMaxEntries) break;
      if (!seen.insert(e.ino).second) continue;  // hard links and loops: once
      Visit(fs, e.ino);
      Result<GuestAttr> attr = fs.Stat(e.ino);
      if (attr.ok() && S_ISDIR(attr->mode) && depth + 1 < kMaxDepth) {
        queue.emplace_back(e.ino, depth + 1);
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto image =
      std::make_shared<const BufferSource>(std::vector<uint8_t>(data, data + size), "fuzz-fs");
  for (const char* type : {"ext4", "ntfs"}) {
    Result<std::unique_ptr<GuestFs>> fs = OpenGuestFs(type, image);
    if (fs.ok()) Walk(**fs);
  }
  return 0;
}
