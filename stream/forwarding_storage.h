// A Storage that hands every call to another one, for classes that change a few of them:
// verify's view of the file it reads once, tests that count reads or hide LocalDir(). Built
// over a const Storage it is read-only, its subdirectories too: whatever would write fails,
// naming the file.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "stream/storage.h"

namespace backupfs {

class ForwardingStorage : public Storage {
 public:
  explicit ForwardingStorage(std::unique_ptr<Storage> owned)
      : owned_(std::move(owned)), reads_(*owned_), writes_(owned_.get()) {}
  explicit ForwardingStorage(Storage& inner) : reads_(inner), writes_(&inner) {}
  explicit ForwardingStorage(const Storage& inner) : reads_(inner), writes_(nullptr) {}

  const std::string& address() const override { return reads_.address(); }
  std::string Describe(std::string_view name) const override { return reads_.Describe(name); }
  std::optional<std::string> LocalDir() const override { return reads_.LocalDir(); }
  Result<bool> Exists() const override { return reads_.Exists(); }
  std::unique_ptr<Storage> Sub(std::string_view dir) const override {
    if (writes_ != nullptr) return reads_.Sub(dir);
    return std::unique_ptr<Storage>(new ForwardingStorage(reads_.Sub(dir), kReadOnly));
  }
  StoreStamp Stamp(std::string_view dir) const override { return reads_.Stamp(dir); }
  Result<std::vector<StoredObject>> List(std::string_view dir) const override {
    return reads_.List(dir);
  }
  Result<std::optional<StoredObject>> Stat(std::string_view name) const override {
    return reads_.Stat(name);
  }
  Result<std::unique_ptr<StoredFile>> Open(std::string_view name) const override {
    return reads_.Open(name);
  }
  Result<std::string> ReadAll(std::string_view name, uint64_t max_size) const override {
    return reads_.ReadAll(name, max_size);
  }
  bool Busy() const override { return reads_.Busy(); }

  Result<std::unique_ptr<ObjectWriter>> Create(std::string_view name,
                                               const PutOptions& options) override {
    BFS_ASSIGN_OR_RETURN(Storage * w, Writable(name));
    return w->Create(name, options);
  }
  Status Put(std::string_view name, std::span<const uint8_t> bytes,
             const PutOptions& options) override {
    BFS_ASSIGN_OR_RETURN(Storage * w, Writable(name));
    return w->Put(name, bytes, options);
  }
  Status Remove(std::string_view name) override {
    BFS_ASSIGN_OR_RETURN(Storage * w, Writable(name));
    return w->Remove(name);
  }
  Status Rename(std::string_view from, std::string_view to) override {
    BFS_ASSIGN_OR_RETURN(Storage * w, Writable(from));
    return w->Rename(from, to);
  }
  Status MakeDir(std::string_view dir) override {
    BFS_ASSIGN_OR_RETURN(Storage * w, Writable(dir));
    return w->MakeDir(dir);
  }
  Result<std::unique_ptr<StorageLock>> Lock(std::string_view holder) override {
    BFS_ASSIGN_OR_RETURN(Storage * w, Writable(""));
    return w->Lock(holder);
  }
  Result<std::vector<std::string>> RemoveUnfinished() override {
    BFS_ASSIGN_OR_RETURN(Storage * w, Writable(""));
    return w->RemoveUnfinished();
  }

 protected:
  const Storage& inner() const { return reads_; }

 private:
  enum ReadOnlyTag { kReadOnly };
  ForwardingStorage(std::unique_ptr<Storage> owned, ReadOnlyTag)
      : owned_(std::move(owned)), reads_(*owned_), writes_(nullptr) {}

  Result<Storage*> Writable(std::string_view name) const {
    if (writes_ == nullptr) {
      return Status::InvalidArgument(reads_.Describe(name) + ": read-only here");
    }
    return writes_;
  }

  std::unique_ptr<Storage> owned_;
  const Storage& reads_;
  Storage* const writes_;
};

}  // namespace backupfs
