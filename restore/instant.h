// Instant recovery: a VM runs from a restore point within seconds. The saveset is mounted by
// the backupfs daemon where the QEMU user can read it; each disk gets a qcow2 overlay in a
// work directory, backed by the point's raw image in the mount; a domain defined from the
// point's XML (adjusted as -c does) runs on the overlays. The guest's writes land in the
// overlays; the saveset is never written.
//
// Live restore (MigrateInstant): while the domain runs, libvirt block-copies each disk into a
// standalone qcow2 image and pivots onto it; then the overlays and the mount go.
//
// The domain carries its own record (instant_record.h) in its libvirt metadata, so every
// later step (list, migrate, resume after a host reboot, end) finds it by name.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/remote.h"
#include "common/run_log.h"
#include "restore/instant_record.h"
#include "restore/saveset_mount.h"
#include "stream/status.h"
#include "stream/storage.h"

namespace backupfs {

struct InstantOptions {
  std::string input;                 // -i: the saveset
  std::shared_ptr<Storage> saveset;  // -i opened (nullptr: the local directory `input`)
  StoreOptions store;                // how -i was opened, when it names a store
  std::string workdir;               // -o: overlays, boot file copies, the mount
  std::string until;                 // -u: the restore point ("" = the newest)
  std::string disk;        // -d: only this disk ("" = all; the others leave the XML, as -c)
  std::string name;        // -N: the new domain ("" = restore_<name>)
  std::string uri;         // -U ("" = qemu:///system)
  std::string migrate_to;  // --migrate-to: live restore into this directory right away
  uint64_t bandwidth = 0;  // --bandwidth, bytes per second per disk (0 = unlimited)
  bool start = true;       // not --no-start
  bool progress = true;    // not -n
  // Remote instant recovery (remote.remote(): -U names another host, see instant_remote.h):
  // `workdir` is on that host, and this host serves the point over NBD on nbd_serve,
  // ADDR:PORT (disk i on PORT+i). Without TLS for now: remote.tls is refused.
  RemoteOptions remote;
  std::string nbd_serve;
};

struct InstantSummary {
  std::string name;
  std::string point;
  std::vector<std::string> overlays;
  bool started = false;
};

// `stop` (a signal) may be set at any time: what was made so far is removed.
Result<InstantSummary> RunInstant(const InstantOptions& options, RunLog& log,
                                  std::atomic<bool>& stop);

struct MigrateOptions {
  std::string uri;
  std::string name;        // the instant domain
  std::string target_dir;  // where the standalone images go
  bool progress = true;
  uint64_t bandwidth = 0;  // bytes per second per disk; 0 = unlimited
  // How to reach the hypervisor of a remote instant domain over ssh (its files are there);
  // when it names no host, what `uri` says (keyfile=, known_hosts=).
  RemoteOptions remote = RemoteOptions();
};
// Copies every disk of the running instant domain into TARGET_DIR/<overlay's name> and pivots
// onto the copies; then removes the overlays, unmounts the saveset and drops the record (a
// remote domain: TARGET_DIR is on its host, and this host stops serving the point). A
// failure or `stop` cancels the copies (the domain stays on its overlays, the record says
// why) and removes the unfinished images; running it again retries. Copies that a killed run
// left behind are taken over.
Status MigrateInstant(const MigrateOptions& options, RunLog& log, std::atomic<bool>& stop);

// Ends an instant domain: destroy, undefine, overlays and our files removed, unmount. Refused
// while a copy job runs on one of its disks.
// A remote domain's files go on its host (through `remote`, see MigrateOptions::remote), and
// its NBD server (nbdkit, the mount) here.
Status EndInstant(const std::string& uri, const std::string& name, RunLog& log,
                  const RemoteOptions& remote = RemoteOptions());

// Mounts the saveset again where it is missing or its daemon is gone (after a host reboot),
// then starts the domain unless `start` is false or it runs. A remote domain's nbdkits that
// are gone are started again, on their ports.
Status ResumeInstant(const std::string& uri, const std::string& name, bool start, RunLog& log);

struct InstantEntry {
  std::string name;
  bool running = false;
  InstantRecord record;
  uint64_t overlay_bytes = 0;  // allocated on the host's disk
  MountState mount = MountState::kAbsent;
  std::string migration;  // "-", "copying 42%", "ready", or the record's state
  std::string advice;     // what to run when something needs the admin ("" when not)
};
struct InstantListing {
  std::vector<InstantEntry> domains;
  // Instant mounts no domain refers to (its domain was undefined by hand), with how to clear.
  std::vector<std::string> leftovers;
};
Result<InstantListing> ListInstant(const std::string& uri);

}  // namespace backupfs
