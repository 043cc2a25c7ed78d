// Owners for libvirt handles and the few libvirt calls capture needs, with errors as Status.
//
// Every handle is a unique_ptr whose deleter closes or frees it. libvirt's own error printing
// is silenced (SilenceLibvirtErrors) so that every message reaches the user once, through a
// Status that names the domain. Handles are not shared between threads.
#pragma once

#include <libvirt/libvirt.h>

#include <memory>
#include <string>
#include <vector>

#include "common/remote.h"
#include "stream/status.h"

namespace backupfs {

struct ConnectCloser {
  void operator()(virConnectPtr c) const { virConnectClose(c); }
};
struct DomainFreer {
  void operator()(virDomainPtr d) const { virDomainFree(d); }
};
struct CheckpointFreer {
  void operator()(virDomainCheckpointPtr c) const { virDomainCheckpointFree(c); }
};
using UniqueConnect = std::unique_ptr<virConnect, ConnectCloser>;
using UniqueDomain = std::unique_ptr<virDomain, DomainFreer>;
using UniqueCheckpoint = std::unique_ptr<virDomainCheckpoint, CheckpointFreer>;

inline constexpr char kDefaultLibvirtUri[] = "qemu:///system";

// Installs an error handler that drops libvirt's default printing to stderr. Idempotent.
void SilenceLibvirtErrors();

// An IOError "<what>: <libvirt's last error message>".
Status LibvirtError(const std::string& what);
// Whether the last libvirt error of this thread has `code` (a virErrorNumber).
bool LastErrorIs(int code);

// Opens a read-write connection to `uri` (kDefaultLibvirtUri when empty).
Result<UniqueConnect> ConnectLibvirt(const std::string& uri);
// The same for `remote.uri`, answering libvirt's credential questions (SASL over qemu+tcp, say)
// with --user and --password; the password never appears in a message.
Result<UniqueConnect> ConnectLibvirt(const RemoteOptions& remote);

// The domain called `name`; NotFound when there is none.
Result<UniqueDomain> LookupDomain(virConnectPtr conn, const std::string& name);

// Ok when libvirt knows no domain `name`: a FailedPrecondition saying so (and that -N gives
// another name) when it does.
Status RequireNameFree(virConnectPtr conn, const std::string& name);

// True when the domain is running (or paused).
Result<bool> DomainIsActive(virDomainPtr dom, const std::string& name);

// virDomainGetXMLDesc (flags 0): the live domain XML.
Result<std::string> DomainXml(virDomainPtr dom, const std::string& name);

// The domain's checkpoint called `checkpoint`; NotFound when libvirt has none by that name.
Result<UniqueCheckpoint> LookupCheckpoint(virDomainPtr dom, const std::string& domain,
                                          const std::string& checkpoint);

// The names of all checkpoints libvirt knows for the domain.
Result<std::vector<std::string>> ListCheckpointNames(virDomainPtr dom, const std::string& domain);

// The name of the checkpoint's parent; "" for a root checkpoint.
Result<std::string> CheckpointParentName(virDomainCheckpointPtr cpt, const std::string& domain);

// virDomainCheckpointGetXMLDesc (flags 0).
Result<std::string> CheckpointXml(virDomainCheckpointPtr cpt, const std::string& domain);

// Deletes the checkpoint (libvirt merges its bitmap into the parent's).
Status DeleteCheckpoint(virDomainPtr dom, const std::string& domain, const std::string& checkpoint);

// Makes libvirt forget the checkpoint without touching bitmaps (METADATA_ONLY).
Status DeleteCheckpointMetadata(virDomainPtr dom, const std::string& domain,
                                const std::string& checkpoint);

// Recreates libvirt's record of a checkpoint from its saved XML (REDEFINE). With `validate`,
// libvirt checks that the disks still hold its bitmap: a FailedPrecondition when not.
Status RedefineCheckpoint(virDomainPtr dom, const std::string& domain, const std::string& xml,
                          bool validate);

// The bytes that changed since the checkpoint, summed over its disks (libvirt's size estimate,
// VIR_DOMAIN_CHECKPOINT_XML_SIZE).
Result<uint64_t> CheckpointChangedBytes(virDomainCheckpointPtr cpt, const std::string& domain);

// Starts the shut-off domain paused (virDomainCreateWithFlags START_PAUSED).
Status StartDomainPaused(virDomainPtr dom, const std::string& domain);
// Powers the domain off at once (virDomainDestroy).
Status DestroyDomain(virDomainPtr dom, const std::string& domain);
Status SuspendDomain(virDomainPtr dom, const std::string& domain);
Status ResumeDomain(virDomainPtr dom, const std::string& domain);

// Freezes the guest's filesystems (all when `mountpoints` is empty) through the guest agent;
// returns how many were frozen. Unavailable when no agent answers.
Result<int> FreezeFilesystems(virDomainPtr dom, const std::string& domain,
                              const std::vector<std::string>& mountpoints);
Status ThawFilesystems(virDomainPtr dom, const std::string& domain,
                       const std::vector<std::string>& mountpoints);

// Defines a persistent domain from `xml` (virDomainDefineXML); `name` is for messages.
Result<UniqueDomain> DefineDomain(virConnectPtr conn, const std::string& xml,
                                  const std::string& name);
Status SetAutostart(virDomainPtr dom, const std::string& domain, bool autostart);

// Whether libvirt starts the domain at boot.
Result<bool> DomainAutostart(virDomainPtr dom, const std::string& domain);

}  // namespace backupfs
