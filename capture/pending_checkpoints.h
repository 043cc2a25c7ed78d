// The libvirt side of a consolidation: deleting the checkpoints of the points it folded.
//
// The saveset keeps them in a pending list (consolidation_journal.h) until a run that reaches
// libvirt deletes them: the consolidation itself, or the next backupfs-capture run. Only
// checkpoints that are still ancestors, in libvirt, of the oldest checkpoint the saveset lists
// are deleted, oldest first (each deletion of a root merges nothing and drops its bitmap):
// a name alone could by now belong to another chain of the domain (a new full backup into
// another directory starts at virtnbdbackup.0 again).
#pragma once

#include <string>
#include <vector>

#include "common/remote.h"
#include "common/run_log.h"
#include "stream/status.h"

namespace backupfs {

// Deletes what it can of the pending list of `saveset` through libvirt at `remote` (its uri,
// "" for the default, and credentials), logs what it did, and returns the names still to delete
// (empty when done). A libvirt that cannot be reached is not an error: its checkpoints stay
// pending, and a warning names them and the virsh command that deletes them.
Result<std::vector<std::string>> DeletePendingCheckpoints(const std::string& saveset,
                                                          const RemoteOptions& remote, RunLog& log);

}  // namespace backupfs
