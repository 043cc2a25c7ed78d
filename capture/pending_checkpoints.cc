#include "capture/pending_checkpoints.h"

#include <algorithm>

#include "backupfs/consolidation_journal.h"
#include "capture/checkpoints.h"
#include "capture/libvirt.h"

namespace backupfs {
namespace {

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

std::string Join(const std::vector<std::string>& v) {
  std::string out;
  for (const std::string& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

// The ancestors of `checkpoint` in libvirt, nearest first.
Result<std::vector<std::string>> Ancestors(virDomainPtr dom, const std::string& domain,
                                           const std::string& checkpoint) {
  std::vector<std::string> out;
  BFS_ASSIGN_OR_RETURN(UniqueCheckpoint at, LookupCheckpoint(dom, domain, checkpoint));
  for (;;) {
    BFS_ASSIGN_OR_RETURN(std::string parent, CheckpointParentName(at.get(), domain));
    if (parent.empty() || Contains(out, parent)) return out;
    out.push_back(parent);
    BFS_ASSIGN_OR_RETURN(at, LookupCheckpoint(dom, domain, parent));
  }
}

class Deleter {
 public:
  Deleter(const std::string& saveset, const RemoteOptions& remote, RunLog& log)
      : saveset_(saveset), remote_(remote), log_(log) {}

  Result<std::vector<std::string>> Run() {
    BFS_ASSIGN_OR_RETURN(pending_, ReadPendingCheckpoints(saveset_));
    if (pending_.checkpoints.empty()) return std::vector<std::string>();
    const std::string& domain = pending_.domain;
    BFS_ASSIGN_OR_RETURN(std::vector<std::string> list,
                         ReadCheckpointList(CheckpointListPath(saveset_, domain)));
    if (list.empty()) return Left(saveset_ + " lists no checkpoint to tell its chain by");
    SilenceLibvirtErrors();
    Result<UniqueConnect> conn = ConnectLibvirt(remote_);
    if (!conn.ok()) return Left(conn.status().message());
    Result<UniqueDomain> dom = LookupDomain(conn->get(), domain);
    if (!dom.ok() && dom.status().code() == StatusCode::kNotFound) {
      log_.Info("domain " + domain + " is gone, and the checkpoints " + Join(pending_.checkpoints) +
                " with it");
      return Keep({});
    }
    if (!dom.ok()) return Left(dom.status().message());
    Result<std::vector<std::string>> ancestors = Ancestors(dom->get(), domain, list.front());
    if (!ancestors.ok()) return Left(ancestors.status().message());
    std::vector<std::string> remaining;
    for (const std::string& name : pending_.checkpoints) {
      if (Contains(list, name)) continue;  // the chain's own again: never ours to delete
      if (!Contains(*ancestors, name)) {
        log_.Info("libvirt checkpoint " + name + " of " + domain + " is no ancestor of " +
                  list.front() + " (gone, or another chain's): left alone");
        continue;
      }
      Status s = DeleteCheckpoint(dom->get(), domain, name);
      if (s.ok()) {
        log_.Info("deleted libvirt checkpoint " + name + " of " + domain +
                  " (its restore point was consolidated)");
      } else {
        log_.Warn(s.message());
        remaining.push_back(name);
      }
    }
    return Keep(remaining);
  }

 private:
  Result<std::vector<std::string>> Keep(std::vector<std::string> remaining) {
    pending_.checkpoints = std::move(remaining);
    BFS_RETURN_IF_ERROR(WritePendingCheckpoints(saveset_, pending_));
    if (!pending_.checkpoints.empty()) return Left("some could not be deleted");
    return pending_.checkpoints;
  }

  Result<std::vector<std::string>> Left(const std::string& why) {
    log_.Warn(why + ": libvirt checkpoints " + Join(pending_.checkpoints) + " of domain " +
              pending_.domain +
              " are left to delete; the next consolidation or backupfs-capture run of " + saveset_ +
              " deletes them, or, oldest first: virsh checkpoint-delete " + pending_.domain + " " +
              pending_.checkpoints.front());
    return pending_.checkpoints;
  }

  const std::string saveset_;
  const RemoteOptions& remote_;
  RunLog& log_;
  PendingCheckpoints pending_;
};

}  // namespace

Result<std::vector<std::string>> DeletePendingCheckpoints(const std::string& saveset,
                                                          const RemoteOptions& remote,
                                                          RunLog& log) {
  return Deleter(saveset, remote, log).Run();
}

}  // namespace backupfs
