// The domain's checkpoints in libvirt, held against a saveset's chain: whether an inc can
// continue it, redefining checkpoints libvirt lost, clearing them for a new chain.
#pragma once

#include <libvirt/libvirt.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/domain_xml.h"
#include "common/host.h"
#include "common/run_log.h"
#include "stream/status.h"
#include "stream/storage.h"

namespace backupfs {

class LibvirtChain {
 public:
  // `checkpoints` holds the saved `<checkpoint>.xml` files; it and `dom` must outlive this.
  LibvirtChain(virDomainPtr dom, std::string domain, const Storage& checkpoints, RunLog& log)
      : dom_(dom), domain_(std::move(domain)), checkpoints_(checkpoints), log_(log) {}

  // Why the running domain's chain `list` (oldest first) cannot continue, "" when it can: a
  // checkpoint libvirt lost is redefined from its saved XML; a bitmap that is gone or
  // inconsistent, or a checkpoint of another chain under the same name, breaks it.
  Result<std::string> Broken(const std::vector<std::string>& list);
  // Deletes this tool's checkpoints, newest first (each merges its bitmap into its parent).
  Status RemoveOurCheckpoints();
  // Deletes a checkpoint called `name` that a killed run left (it has no data file), so that
  // its changes count for the run about to create it.
  Status DropOrphan(const std::string& name);
  // libvirt's estimate of the bytes changed since `checkpoint`.
  Result<uint64_t> ChangedSince(const std::string& checkpoint);

 private:
  static std::string SavedXmlName(const std::string& name) { return name + ".xml"; }
  Status Redefine(const std::string& name);
  Result<std::string> Replaced(const std::string& name, virDomainCheckpointPtr live);
  Result<std::string> Replaced(const std::string& name, virDomainCheckpointPtr live,
                               const std::string& saved_xml);
  Result<bool> LinkedToSavedNewest(const std::vector<std::string>& list);
  Result<std::string> EachCheckpointBroken(const std::vector<std::string>& list);

  virDomainPtr dom_;
  std::string domain_;
  const Storage& checkpoints_;
  RunLog& log_;
};

// Why a shut-off domain's chain cannot continue from checkpoint `last` ("" when it can): every
// qcow2 disk must hold its persistent bitmap, usable (qemu-img info on `host`).
Result<std::string> OfflineChainBroken(Host& host, const std::string& domain_xml,
                                       const std::string& domain, const std::string& last);

}  // namespace backupfs
