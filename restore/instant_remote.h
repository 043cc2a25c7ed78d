// Remote instant recovery: the domain runs on another hypervisor, from a restore point served
// over NBD by this machine (the backup host).
//
// Here: the saveset is mounted by the backupfs daemon in a private directory, and one
// read-only nbdkit per disk serves the point's raw image on TCP (--nbd-serve ADDR:PORT, disk
// i on PORT+i; no TLS yet). Both are detached from the command: the domain keeps reading
// after it ends. On the hypervisor (through its Host, i.e. ssh): the work directory, a qcow2
// overlay per disk whose backing file is the NBD export, the boot file copies and the domain
// XML; the domain is defined and started over the remote libvirt URI.
//
// The record (instant_record.h, in the remote domain's metadata) names the nbdkit pids, the
// ports and the mount, so that the later steps (live restore, end, resume, list) run from
// this machine find and stop them.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "common/host.h"
#include "common/remote.h"
#include "common/run_log.h"
#include "restore/instant.h"
#include "restore/instant_record.h"
#include "stream/status.h"

namespace backupfs {

// -a instant with a remote -U (options.remote.remote()). `stop` may be set at any time: what
// was made so far, here and on the hypervisor, is removed.
Result<InstantSummary> RunRemoteInstant(const InstantOptions& options, RunLog& log,
                                        std::atomic<bool>& stop);

// The hypervisor of a remote instant domain: `remote` when it names a host, else the host of
// `uri` with the ssh settings the URI carries (keyfile=, known_hosts=, no_verify=).
Result<std::unique_ptr<Host>> ConnectInstantHost(const std::string& uri,
                                                 const RemoteOptions& remote);

// A FailedPrecondition unless this machine is the backup host that serves `record` (the pids
// it names are only meaningful there).
Status CheckServedHere(const InstantRecord& record, const std::string& name);

// Serves `record`'s point from this machine where something is missing: mounts the saveset
// on record.mount when it is not mounted (a stale mount is refused), and starts an nbdkit for
// each disk whose recorded one does not run, recording its pid in `record`. A port in use is
// a FailedPrecondition naming the address and port.
Status ServeInstantPoint(InstantRecord& record, RunLog& log);

// Stops the record's nbdkits, unmounts the saveset and removes the served directory. Keeps
// going past failures; returns the first.
Status StopServingInstant(const InstantRecord& record, RunLog& log);

// RemoveInstantFiles for a remote domain: the overlays (and, unless keep_files, the files) on
// `host`, its work directory when that leaves it empty, then StopServingInstant.
Status RemoveRemoteInstantFiles(Host& host, const InstantRecord& record, bool keep_files,
                                RunLog& log);

}  // namespace backupfs
