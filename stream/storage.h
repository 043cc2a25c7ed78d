// Where a saveset's files live: a local directory or a prefix of an S3 bucket. The stream
// reader and writer, the mount, restore, verify and capture reach a saveset's files only
// through this interface, so a saveset lives in a bucket exactly as it lives in a directory:
// same names, same bytes (`aws s3 sync` of one is a valid copy of the other).
//
// Names are relative to the saveset and use "/" between levels ("vda.full.data",
// "checkpoints/virtnbdbackup.0.xml"). Implementations: stream/local_storage.h (a directory)
// and storage/s3_storage.h (a bucket prefix); storage/open_storage.h picks one from an address.
//
// Thread-safe: any number of threads may use one Storage and the files it opens.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "stream/file.h"
#include "stream/status.h"

namespace backupfs {

struct StoredObject {
  std::string name;  // relative to the directory listed; a subdirectory's name ends in "/"
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  // Changes whenever the content is replaced: an S3 ETag, a local file's dev:ino:mtime:size.
  std::string version;
  bool is_dir() const { return !name.empty() && name.back() == '/'; }
};

// One stored file, open for reading. Its bytes never change while it is open: a local file is
// held open (a replacement is a new inode), and an S3 object's ranged reads are conditional on
// the ETag seen at open, so a reader of an object being replaced gets the old bytes or an
// error naming the change, never a mix.
class StoredFile : public ByteSource {
 public:
  // The file descriptor for splice and fadvise, or -1 when the bytes are not in a local file.
  virtual int fd() const { return -1; }
  virtual const std::string& version() const = 0;
  // The caller will read [offset, offset + length) soon: start fetching it (fadvise WILLNEED,
  // or ranged GETs in the background). Never an error; a hint only.
  virtual void WillNeed(uint64_t /*offset*/, uint64_t /*length*/) const {}
};

struct PutOptions {
  int mode = 0640;      // local files
  bool durable = true;  // fsync (local); a store's own durability otherwise
  // Derived data that can be rebuilt from the saveset (an index built by scanning): a store
  // that should not or cannot be written may keep it in its local cache instead.
  bool derived = false;
};

// Builds one file. Nothing is visible under its name until Commit() returns, and then all of
// it is (write `.partial`, fsync, rename; or complete a multipart upload). Destroyed without
// Commit(), it leaves nothing behind that looks complete (the `.partial` is removed, the
// multipart upload aborted). Not thread-safe: one thread appends.
class ObjectWriter {
 public:
  virtual ~ObjectWriter() = default;
  // Bytes are taken in order; a failure is sticky (every later call returns it).
  virtual Status Append(std::span<const uint8_t> bytes) = 0;
  // After the last Append: stores every byte, so that Commit only has to make them visible,
  // and reports a failure to store them. A writer calls it before storing files that must not
  // outlive a data file that fails (its sidecars). Nothing is visible yet.
  virtual Status Flush() = 0;
  virtual Status Commit() = 0;
  virtual const std::string& name() const = 0;  // for messages: a path or s3:// URL
  virtual uint64_t size() const = 0;            // bytes appended so far
};

// What a look at a directory found, to tell whether it changed since an earlier look without
// listing it again where the store allows that.
struct StoreStamp {
  bool exists = false;
  // The directory itself, unchanged while it exists (a local directory's dev:ino; a store
  // prefix's URL): a directory replaced by another of the same name has another identity.
  std::string identity;
  // Equal tokens: nothing in the directory changed (a local directory's dev:ino:mtime; a store's
  // digest of its listing's names and versions).
  std::string token;
  struct timespec mtime = {};  // of the directory, or its newest file
  // The token may miss a change made in the same clock tick (a local directory's mtime within
  // the filesystem's granularity of now): do not trust it yet.
  bool racy = false;
  bool operator==(const StoreStamp& o) const { return exists == o.exists && token == o.token; }
};

// A store prefix's stamp from its listing (a store has no directory to stat): equal tokens
// while the names, versions and sizes listed are; the newest object's mtime.
StoreStamp StampOfListing(std::string identity, const std::vector<StoredObject>& listed);

// Held while a writer (capture, consolidation, retention) owns the saveset; released on
// destruction.
class StorageLock {
 public:
  virtual ~StorageLock() = default;
  // Ok while the lock is still this run's; otherwise why not (a lease in a store that could
  // not be renewed in time, or that another run took over), naming where the lock lives. A
  // writer asks before each step that makes its work visible, and stops when it is lost.
  virtual Status Held() const = 0;
};

class Storage {
 public:
  virtual ~Storage() = default;

  // As the user gave it: "/srv/backup/vm1" or "s3://bucket/vm1".
  virtual const std::string& address() const = 0;
  // A file's full name for messages: its path, or its s3:// URL.
  virtual std::string Describe(std::string_view name) const = 0;
  // The local directory when the saveset is one (for tools that must hand a path to another
  // program, such as virtnbdrestore or qemu-img); nullopt for remote stores.
  virtual std::optional<std::string> LocalDir() const { return std::nullopt; }

  // Whether the saveset's directory (or any object under the prefix) exists.
  virtual Result<bool> Exists() const = 0;
  // The storage of subdirectory `dir` (a saveset in a collection, a broken-chain.* set aside).
  virtual std::unique_ptr<Storage> Sub(std::string_view dir) const = 0;
  // A look at `dir` ("" the saveset itself); a directory that cannot be read does not exist.
  virtual StoreStamp Stamp(std::string_view dir = "") const = 0;
  // Files and subdirectories directly under `dir` ("" for the saveset itself), in no
  // particular order. A missing directory is NotFound naming it.
  virtual Result<std::vector<StoredObject>> List(std::string_view dir = "") const = 0;
  // nullopt when there is no such file. A local directory is reported too; a store has no
  // directories to report (ask Sub(dir)->Exists() whether anything lies under a name).
  virtual Result<std::optional<StoredObject>> Stat(std::string_view name) const = 0;
  // NotFound (naming the file) when there is none.
  virtual Result<std::unique_ptr<StoredFile>> Open(std::string_view name) const = 0;
  // The whole file in one request: NotFound when there is none, Corruption naming it when it
  // is larger than `max_size` (so a hostile size is never allocated).
  virtual Result<std::string> ReadAll(std::string_view name,
                                      uint64_t max_size = uint64_t{1} << 30) const;

  virtual Result<std::unique_ptr<ObjectWriter>> Create(std::string_view name,
                                                       const PutOptions& options = {}) = 0;
  // Create-or-replace of a small file in one step.
  virtual Status Put(std::string_view name, std::span<const uint8_t> bytes,
                     const PutOptions& options = {});
  Status PutText(std::string_view name, std::string_view text, const PutOptions& options = {}) {
    return Put(name, std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()),
               options);
  }
  // Removing a file that is not there is not an error.
  virtual Status Remove(std::string_view name) = 0;
  // Moves a file to another name (another directory of the saveset): a rename in a directory;
  // a server-side copy, then a delete, in a store, where another reader may see both for a
  // moment but never a partial file. A local directory renames a subdirectory too (named
  // "sub/", as List names it, or "sub"), whole; a store has none: move its objects one by one
  // where LocalDir() is nullopt.
  virtual Status Rename(std::string_view from, std::string_view to) = 0;
  // Makes `dir` (and its parents) when a store has directories; a no-op on S3.
  virtual Status MakeDir(std::string_view dir) = 0;

  // The saveset's writer lock, across processes and (for a store) across hosts:
  // FailedPrecondition naming the saveset and the holder when another run has it.
  virtual Result<std::unique_ptr<StorageLock>> Lock(std::string_view holder) = 0;
  // Whether a writer holds the lock now (without taking it).
  virtual bool Busy() const = 0;
  // Removes what interrupted writers left behind under the saveset and returns a line naming
  // each: `.partial` files in a directory, multipart uploads never completed in a store. Only
  // with the lock held (a live writer's would go too).
  virtual Result<std::vector<std::string>> RemoveUnfinished() = 0;
};

// "dir/name" joined with one "/" ("" + "x" is "x").
std::string JoinName(std::string_view dir, std::string_view name);

}  // namespace backupfs
