#include "capture/domain_state.h"

#include "capture/libvirt.h"
#include "common/domain_xml.h"

namespace backupfs {

DomainStateGuard::~DomainStateGuard() {
  Thaw();
  Resume();
  if (!started_) return;
  log_.Info("stopping domain " + name_ + ", started for the backup");
  Status s = DestroyDomain(dom_, name_);
  if (!s.ok()) log_.Warn(s.message());
}

void DomainStateGuard::Resume() {
  if (!suspended_) return;
  suspended_ = false;
  Status s = ResumeDomain(dom_, name_);
  if (!s.ok()) {
    log_.Warn(s.message());
  } else {
    log_.Info("domain " + name_ + " resumed");
  }
}

void DomainStateGuard::Freeze(const std::string& domain_xml,
                              const std::vector<std::string>& mountpoints) {
  Result<bool> has = HasGuestAgentChannel(domain_xml, name_);
  if (!has.ok() || !*has) {
    log_.Info("domain " + name_ +
              " has no guest agent channel: filesystems not frozen (crash-consistent)");
    return;
  }
  Result<int> n = FreezeFilesystems(dom_, name_, mountpoints);
  if (!n.ok()) {
    log_.Warn(n.status().message() + ": filesystems not frozen (crash-consistent backup)");
    return;
  }
  frozen_ = true;
  frozen_mountpoints_ = mountpoints;
  log_.Info("froze " + std::to_string(*n) + " guest filesystem(s)");
}

void DomainStateGuard::Thaw() {
  if (!frozen_) return;
  frozen_ = false;
  Status s = ThawFilesystems(dom_, name_, frozen_mountpoints_);
  if (!s.ok()) {
    log_.Warn(s.message());
  } else {
    log_.Info("thawed the guest filesystems");
  }
}

}  // namespace backupfs
