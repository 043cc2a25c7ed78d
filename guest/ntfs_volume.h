// Internal to the NTFS reader (ntfs_*.cc): a volume mounted read-only through libntfs-3g,
// owners of its handles, and the capture of its log.
//
// Threading: libntfs-3g is not thread-safe; every call on a volume runs under Volume::mu.
// libntfs-3g's log goes to a thread-local buffer of the calling thread (a LogCapture), which
// Volume::Error appends to the message.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "common/thread_annotations.h"
#include "guest/ntfs_device.h"
#include "stream/status.h"

namespace backupfs::ntfs {

constexpr uint64_t kWholeVolume = UINT64_MAX;  // an error of no one MFT record

// Collects what libntfs-3g logs on this thread while it lives (warnings and errors only).
class LogCapture {
 public:
  LogCapture();
  ~LogCapture();
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;
  const std::string& text() const { return text_; }

 private:
  std::string text_;
  std::string* prev_;
};

// --- owners of libntfs-3g handles -------------------------------------------------------------

struct InodeClose {
  void operator()(ntfs_inode* ni) const { ntfs_inode_close(ni); }
};
struct AttrClose {
  void operator()(ntfs_attr* na) const { ntfs_attr_close(na); }
};
struct SearchCtxPut {
  void operator()(ntfs_attr_search_ctx* c) const { ntfs_attr_put_search_ctx(c); }
};
struct CFree {
  void operator()(void* p) const { free(p); }
};
using InodePtr = std::unique_ptr<ntfs_inode, InodeClose>;
using AttrPtr = std::unique_ptr<ntfs_attr, AttrClose>;
using SearchCtxPtr = std::unique_ptr<ntfs_attr_search_ctx, SearchCtxPut>;
template <typename T>
using CPtr = std::unique_ptr<T, CFree>;

// An inode and its unnamed data attribute, kept open between reads (na closes first).
struct OpenData {
  InodePtr ni;
  AttrPtr na;
  uint64_t ino = 0;
  uint64_t last_use = 0;
};

// The mounted volume, shared by the filesystem and its open files.
class Volume {
 public:
  explicit Volume(std::shared_ptr<const ByteSource> source) { device_.source = std::move(source); }
  ~Volume();
  Volume(const Volume&) = delete;
  Volume& operator=(const Volume&) = delete;

  const std::string& name() const { return device_.source->name(); }
  NtfsDeviceState* device() { return &device_; }

  // "<source>: MFT record N: <what>: <errno text> (libntfs-3g: <log>)"; a failed read of the
  // source says what the source said.
  Status Error(uint64_t ino, const std::string& what, int err, const LogCapture& log) REQUIRES(mu);

  Result<InodePtr> OpenInode(uint64_t ino, const LogCapture& log) REQUIRES(mu);

  // The open data attribute of `ino`, opened (and the least recently used one closed) if it
  // is not among the last few used. Valid until the next call.
  Result<ntfs_attr*> DataAttr(uint64_t ino, const LogCapture& log) REQUIRES(mu);

  // Keeps a note for GuestFs::Notes (the first 64).
  void Note(std::string note) REQUIRES(mu);

  Mutex mu;
  ntfs_volume* vol GUARDED_BY(mu) = nullptr;
  std::vector<std::string> notes GUARDED_BY(mu);

 private:
  NtfsDeviceState device_;  // outlives vol (destroyed after the destructor's body)
  std::deque<OpenData> open_ GUARDED_BY(mu);
  uint64_t clock_ GUARDED_BY(mu) = 0;
};

// Mounts `source` read-only, with notes for a dirty or hibernated volume.
Result<std::shared_ptr<Volume>> MountVolume(std::shared_ptr<const ByteSource> source);

// The whole value of a small attribute (Interix files, xattrs), or an error when it holds
// more than `limit` bytes.
Result<std::vector<uint8_t>> ReadSmall(Volume& v, ntfs_attr* na, uint64_t ino, int64_t limit,
                                       const LogCapture& log) REQUIRES(v.mu);

}  // namespace backupfs::ntfs
