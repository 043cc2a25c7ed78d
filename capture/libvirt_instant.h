// The libvirt calls instant recovery and live restore need: starting and removing domains,
// our metadata element in a domain's XML, listing domains, and block copy jobs. Errors are
// Status values naming the domain (and disk).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "capture/libvirt.h"

namespace backupfs {

// Starts the shut-off domain (virDomainCreate).
Status StartDomain(virDomainPtr dom, const std::string& domain);
// Removes the persistent definition, its NVRAM file and any checkpoint/snapshot metadata.
Status UndefineDomain(virDomainPtr dom, const std::string& domain);

// Our element in the domain's <metadata>, under namespace `uri` with prefix `prefix`; both the
// persistent definition and, when the domain runs, the live one. "" removes it.
Status SetDomainMetadata(virDomainPtr dom, const std::string& domain, const std::string& uri,
                         const std::string& prefix, const std::string& xml);
// The element (of the live definition when running, else the persistent one); nullopt when
// the domain has none.
Result<std::optional<std::string>> DomainMetadata(virDomainPtr dom, const std::string& domain,
                                                  const std::string& uri);

// Every domain libvirt knows, running or not.
Result<std::vector<UniqueDomain>> ListAllDomains(virConnectPtr conn);
std::string DomainName(virDomainPtr dom);

// The user and group QEMU processes run as (the DAC base label of libvirt's capabilities);
// nullopt when libvirt reports none (a session daemon: the caller's own user).
struct QemuProcessUser {
  uid_t uid = 0;
  gid_t gid = 0;
};
Result<std::optional<QemuProcessUser>> QemuUser(virConnectPtr conn);

// A block job on one disk, as virDomainGetBlockJobInfo reports it (none on a shut-off domain).
struct BlockJobState {
  bool exists = false;
  int type = 0;  // virDomainBlockJobType
  uint64_t cur = 0;
  uint64_t end = 0;
  // A copy job is ready to pivot once it has caught up (cur == end, end > 0).
  bool ready() const { return exists && end > 0 && cur == end; }
};
Result<BlockJobState> GetBlockJob(virDomainPtr dom, const std::string& domain,
                                  const std::string& disk);

// Starts a full (not shallow) copy of `disk` into a new qcow2 file `target` that QEMU creates,
// as a transient job (libvirt allows copies of persistent domains only so), at most
// `bytes_per_second` fast (0: unlimited).
Status StartBlockCopy(virDomainPtr dom, const std::string& domain, const std::string& disk,
                      const std::string& target, uint64_t bytes_per_second);
// Changes a running job's speed limit (0: unlimited).
Status SetBlockJobSpeed(virDomainPtr dom, const std::string& domain, const std::string& disk,
                        uint64_t bytes_per_second);
// Switches the disk to the copy (the job must be ready); libvirt updates both definitions.
Status PivotBlockCopy(virDomainPtr dom, const std::string& domain, const std::string& disk);
// Ends the job without switching: the disk stays on its source.
Status AbortBlockJob(virDomainPtr dom, const std::string& domain, const std::string& disk);

}  // namespace backupfs
