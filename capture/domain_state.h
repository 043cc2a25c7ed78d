// What a backup run does to the domain's state, undone whatever way the run ends: a domain
// started paused for the backup (-S) is destroyed again, a suspended one (--pause) resumed,
// frozen guest filesystems thawed.
#pragma once

#include <libvirt/libvirt.h>

#include <string>
#include <vector>

#include "common/run_log.h"

namespace backupfs {

class DomainStateGuard {
 public:
  DomainStateGuard(virDomainPtr dom, std::string name, RunLog& log)
      : dom_(dom), name_(std::move(name)), log_(log) {}
  ~DomainStateGuard();
  DomainStateGuard(const DomainStateGuard&) = delete;
  DomainStateGuard& operator=(const DomainStateGuard&) = delete;

  void MarkStarted() { started_ = true; }
  // Started paused by us: no guest agent can answer.
  bool started_paused() const { return started_; }
  void MarkSuspended() { suspended_ = true; }
  void Resume();

  // Freezes the guest's filesystems (`mountpoints`, or all when empty) when an agent answers,
  // so that the job starts where they are consistent. Without an agent the backup is
  // crash-consistent, which is a warning only when the domain has an agent channel that does
  // not answer.
  void Freeze(const std::string& domain_xml, const std::vector<std::string>& mountpoints);
  void Thaw();

 private:
  virDomainPtr dom_;
  std::string name_;
  RunLog& log_;
  bool started_ = false;
  bool suspended_ = false;
  bool frozen_ = false;
  std::vector<std::string> frozen_mountpoints_;
};

}  // namespace backupfs
