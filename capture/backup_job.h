// A libvirt pull-mode backup job and the scratch directory it needs, as owners.
//
// WorkDir: a fresh directory on the hypervisor (under /var/tmp by default) with mode 0777
// (QEMU runs as libvirt-qemu and must bind the NBD socket and create scratch files in it),
// removed with its contents when the owner goes. BackupJob: started by virDomainBackupBegin; its
// destructor aborts a job still running and deletes the checkpoint the job created unless
// KeepCheckpoint() was called, so an early return after any failure leaves libvirt as it was.
// Neither is thread-safe.
#pragma once

#include <libvirt/libvirt.h>

#include <memory>
#include <string>

#include "common/host.h"
#include "stream/status.h"

namespace backupfs {

class WorkDir {
 public:
  // `host` must outlive the directory.
  static Result<std::unique_ptr<WorkDir>> Create(Host& host, const std::string& parent);
  ~WorkDir();
  WorkDir(const WorkDir&) = delete;
  WorkDir& operator=(const WorkDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  WorkDir(Host& host, std::string path) : host_(host), path_(std::move(path)) {}
  Host& host_;
  std::string path_;
};

// Prefix of the work directories' names; each holds `owner.pid`: "PID" of the creating
// process, or "PID@MACHINE-ID" when it runs on another machine than the hypervisor.
inline constexpr char kWorkDirPrefix[] = "backupfs-capture.";

// What `owner.pid` says for this process on `host`.
std::string WorkDirOwner(const Host& host);

// Aborts a pull-mode backup job that a killed backupfs-capture run left on the domain: one whose
// NBD socket or scratch files lie in a work directory of ours (on `host`, the hypervisor) whose
// owner process is gone (that directory is removed too; with -f the socket lies elsewhere, the
// scratch files do not). A remote run's owner is gone when it ran on this machine and its pid
// is not alive; a job of another backup host is left alone, as are jobs of live runs and of
// other tools. Returns whether it aborted.
Result<bool> AbortStaleJob(Host& host, virDomainPtr dom, const std::string& domain);

// Aborts whatever pull-mode backup job runs on the domain, whoever started it (-k). Returns
// whether there was one.
Result<bool> AbortAnyBackupJob(virDomainPtr dom, const std::string& domain);

class BackupJob {
 public:
  // Starts the job. `checkpoint_xml` empty: the job creates no checkpoint (copy, diff);
  // otherwise `checkpoint` is the name in it. `dom` must outlive the job.
  static Result<std::unique_ptr<BackupJob>> Begin(virDomainPtr dom, const std::string& domain,
                                                  const std::string& backup_xml,
                                                  const std::string& checkpoint_xml,
                                                  const std::string& checkpoint);
  ~BackupJob();
  BackupJob(const BackupJob&) = delete;
  BackupJob& operator=(const BackupJob&) = delete;

  // Ends the pull-mode job (virDomainAbortJob) and waits until libvirt has dropped it (its NBD
  // server stopped). Idempotent.
  Status End();
  // The backup succeeded: the destructor keeps the checkpoint.
  void KeepCheckpoint() { checkpoint_.clear(); }

 private:
  BackupJob(virDomainPtr dom, std::string domain, std::string checkpoint)
      : dom_(dom), domain_(std::move(domain)), checkpoint_(std::move(checkpoint)) {}

  virDomainPtr dom_;
  std::string domain_;
  std::string checkpoint_;  // created by this job and not yet kept; "" otherwise
  bool active_ = true;
};

}  // namespace backupfs
