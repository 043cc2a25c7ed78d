// The checkpoint chain of a saveset and the XML that asks libvirt for a backup job.
//
// Pure logic and small files, no libvirt calls: backup.cc drives libvirt with these.
// Naming follows virtnbdbackup: checkpoints `virtnbdbackup.<N>`, the chain listed in
// `<outdir>/<domain>.cpt` as a JSON list of names in creation order.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "stream/status.h"
#include "stream/storage.h"

namespace backupfs {

inline constexpr char kCheckpointPrefix[] = "virtnbdbackup.";

// "virtnbdbackup.<n>".
std::string CheckpointName(size_t n);
// True for names this tool (or virtnbdbackup) creates: the prefix followed by digits only.
bool IsOurCheckpoint(const std::string& name);
// N of "virtnbdbackup.N"; nullopt for other names.
std::optional<size_t> CheckpointNumber(const std::string& name);
// The checkpoint an inc after `list` (the saveset's chain, oldest first) creates: one past the
// highest number listed. Not the list's length: a consolidated saveset lists only the
// checkpoints it still has (virtnbdbackup.3, .4, .5), and the next one is virtnbdbackup.6.
std::string NextCheckpointName(const std::vector<std::string>& list);

// `<domain>.cpt`, the list's name in the saveset.
std::string CheckpointListName(const std::string& domain);
// `<outdir>/<domain>.cpt`.
std::string CheckpointListPath(const std::string& outdir, const std::string& domain);
// The names in the list file; empty when the file does not exist. A file that is not a JSON
// list of strings is Corruption naming it.
Result<std::vector<std::string>> ReadCheckpointList(const std::string& path);
Result<std::vector<std::string>> ReadCheckpointList(const Storage& saveset, std::string_view name);
// Replaces the list file atomically (fsynced).
Status WriteCheckpointList(const std::string& path, const std::vector<std::string>& names);
Status WriteCheckpointList(Storage& saveset, std::string_view name,
                           const std::vector<std::string>& names);

// A disk as the backup and checkpoint XML see it.
struct JobDisk {
  std::string target;  // "vda"
  bool backup = true;  // false: listed with backup='no' / checkpoint='no'
  // false: backed up but without a bitmap (raw disks, which cannot hold one)
  bool checkpoint = true;
};

// <domaincheckpoint> for virDomainBackupBegin: `name`, its `parent` ("" for none), a bitmap
// for every disk with backup = true.
std::string BuildCheckpointXml(const std::string& name, const std::string& parent,
                               const std::vector<JobDisk>& disks);

// Where the pull-mode job's NBD server listens: a unix socket on the hypervisor, or TCP
// (name = the address QEMU binds) with TLS from libvirt's backup_tls_x509_cert_dir.
struct JobServer {
  static JobServer Unix(std::string socket) { return {std::move(socket), "", 0, false}; }
  static JobServer Tcp(std::string name, unsigned port, bool tls) {
    return {"", std::move(name), port, tls};
  }
  std::string socket;  // "" for TCP
  std::string name;
  unsigned port = 0;
  bool tls = false;
};

// <domainbackup mode='pull'> serving NBD on `server`, one scratch file per disk in
// `scratch_dir`; with `incremental` set, only what changed since that checkpoint is dirty.
std::string BuildBackupXml(const JobServer& server, const std::string& scratch_dir,
                           const std::string& incremental, const std::vector<JobDisk>& disks);

}  // namespace backupfs
