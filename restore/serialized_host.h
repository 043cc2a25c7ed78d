// A Host shared by the restore's disk threads. A Host is used by one thread at a time (an ssh
// session is not thread-safe), and disks are restored in parallel: every call, including those
// on the processes it started, goes through one mutex. The NBD data does not go through the
// Host, so the lock is only held for short commands and file operations (and for a qemu-nbd's
// Stop, which waits for it to close its image).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/host.h"
#include "common/thread_annotations.h"

namespace backupfs {

class SerializedHost final : public Host {
 public:
  // `inner` must outlive this object and every process started through it.
  explicit SerializedHost(Host& inner) : inner_(inner) {}

  bool remote() const override { return inner_.remote(); }
  const std::string& name() const override { return inner_.name(); }
  const std::string& address() const override { return inner_.address(); }

  Result<CommandResult> Run(const std::vector<std::string>& argv) override EXCLUDES(mu_) {
    MutexLock lock(mu_);
    return inner_.Run(argv);
  }
  Result<std::unique_ptr<HostProcess>> Spawn(const std::vector<std::string>& argv) override
      EXCLUDES(mu_) {
    MutexLock lock(mu_);
    BFS_ASSIGN_OR_RETURN(std::unique_ptr<HostProcess> p, inner_.Spawn(argv));
    return std::unique_ptr<HostProcess>(new Process(std::move(p), mu_));
  }
  Result<std::string> ReadFile(const std::string& path) override EXCLUDES(mu_) {
    MutexLock lock(mu_);
    return inner_.ReadFile(path);
  }
  Status FetchFile(const std::string& path, const std::string& local) override EXCLUDES(mu_) {
    MutexLock lock(mu_);
    return inner_.FetchFile(path, local);
  }
  Status PutFile(const std::string& local, const std::string& path, mode_t mode) override
      EXCLUDES(mu_) {
    MutexLock lock(mu_);
    return inner_.PutFile(local, path, mode);
  }
  Status WriteFile(const std::string& path, const std::string& contents, mode_t mode) override
      EXCLUDES(mu_) {
    MutexLock lock(mu_);
    return inner_.WriteFile(path, contents, mode);
  }
  Result<bool> Exists(const std::string& path) override EXCLUDES(mu_) {
    MutexLock lock(mu_);
    return inner_.Exists(path);
  }
  Status MakeDirs(const std::string& path, mode_t mode) override EXCLUDES(mu_) {
    MutexLock lock(mu_);
    return inner_.MakeDirs(path, mode);
  }
  Status Rename(const std::string& from, const std::string& to) override EXCLUDES(mu_) {
    MutexLock lock(mu_);
    return inner_.Rename(from, to);
  }
  Status Remove(const std::string& path) override EXCLUDES(mu_) {
    MutexLock lock(mu_);
    return inner_.Remove(path);
  }
  Status Sync(const std::string& path) override EXCLUDES(mu_) {
    MutexLock lock(mu_);
    return inner_.Sync(path);
  }

 private:
  class Process final : public HostProcess {
   public:
    Process(std::unique_ptr<HostProcess> inner, Mutex& mu) : inner_(std::move(inner)), mu_(mu) {}
    ~Process() override EXCLUDES(mu_) {
      MutexLock lock(mu_);
      inner_.reset();
    }
    std::optional<std::string> Exited() override EXCLUDES(mu_) {
      MutexLock lock(mu_);
      return inner_->Exited();
    }
    Status Stop(const std::string& what) override EXCLUDES(mu_) {
      MutexLock lock(mu_);
      return inner_->Stop(what);
    }

   private:
    std::unique_ptr<HostProcess> inner_;
    Mutex& mu_;
  };

  Host& inner_;
  Mutex mu_;
};

}  // namespace backupfs
