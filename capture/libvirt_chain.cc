#include "capture/libvirt_chain.h"

#include <algorithm>

#include "capture/checkpoints.h"
#include "capture/libvirt.h"
#include "capture/saveset_files.h"
#include "stream/file.h"

namespace backupfs {

namespace {

// A checkpoint's XML names its disks and bitmaps: a few KiB.
constexpr uint64_t kMaxCheckpointXml = 16u << 20;

}  // namespace

// Fast path: libvirt has every checkpoint of `list`, each the child of the one before, and the
// newest is the one this saveset saved (its creation time). Then all are: another chain's full
// deletes every checkpoint of ours before it creates its own, and a checkpoint deleted and made
// again under its old name would be a child of the newest, not of its old parent. So one saved
// XML is read instead of one per point (in a store, a request each). False: look at each.
Result<bool> LibvirtChain::LinkedToSavedNewest(const std::vector<std::string>& list) {
  for (size_t i = 0; i < list.size(); ++i) {
    Result<UniqueCheckpoint> cpt = LookupCheckpoint(dom_, domain_, list[i]);
    if (!cpt.ok()) return false;
    if (i > 0) {
      Result<std::string> xml = CheckpointXml(cpt->get(), domain_);
      if (!xml.ok()) return false;
      Result<CheckpointInfo> live = ParseCheckpointXml(*xml, "libvirt's checkpoint " + list[i]);
      if (!live.ok() || live->parent != list[i - 1]) return false;
    }
    if (i + 1 < list.size()) continue;
    Result<std::string> saved_xml = checkpoints_.ReadAll(SavedXmlName(list[i]), kMaxCheckpointXml);
    if (!saved_xml.ok()) return false;
    BFS_ASSIGN_OR_RETURN(std::string replaced, Replaced(list[i], cpt->get(), *saved_xml));
    return replaced.empty();
  }
  return false;
}

Result<std::string> LibvirtChain::Broken(const std::vector<std::string>& list) {
  if (list.empty()) return std::string("no checkpoint yet");
  BFS_ASSIGN_OR_RETURN(bool linked, LinkedToSavedNewest(list));
  if (!linked) {
    BFS_ASSIGN_OR_RETURN(std::string why, EachCheckpointBroken(list));
    if (!why.empty()) return why;
  }
  BFS_ASSIGN_OR_RETURN(UniqueCheckpoint last, LookupCheckpoint(dom_, domain_, list.back()));
  // Asking libvirt for the changed size reads every bitmap: a missing one fails here.
  Result<uint64_t> size = CheckpointChangedBytes(last.get(), domain_);
  if (!size.ok()) return size.status().message();
  return std::string();
}

// Every checkpoint of `list` in turn: one libvirt lost is redefined from its saved XML; the
// first that is another chain's is why the chain is broken ("" when none is).
Result<std::string> LibvirtChain::EachCheckpointBroken(const std::vector<std::string>& list) {
  for (const std::string& name : list) {
    Result<UniqueCheckpoint> cpt = LookupCheckpoint(dom_, domain_, name);
    if (!cpt.ok()) {
      Status s = Redefine(name);
      if (!s.ok()) return s.message();
      continue;
    }
    BFS_ASSIGN_OR_RETURN(std::string replaced, Replaced(name, cpt->get()));
    if (!replaced.empty()) return replaced;
  }
  return std::string();
}

// Why libvirt's checkpoint `name` is not the saveset's ("" when it is, or when the saveset
// kept no XML to compare: an older saveset without checkpoints/).
Result<std::string> LibvirtChain::Replaced(const std::string& name, virDomainCheckpointPtr live) {
  Result<std::string> saved_xml = checkpoints_.ReadAll(SavedXmlName(name), kMaxCheckpointXml);
  if (!saved_xml.ok()) return std::string();
  return Replaced(name, live, *saved_xml);
}

Result<std::string> LibvirtChain::Replaced(const std::string& name, virDomainCheckpointPtr live,
                                           const std::string& saved_xml) {
  const std::string path = checkpoints_.Describe(SavedXmlName(name));
  BFS_ASSIGN_OR_RETURN(std::string live_xml, CheckpointXml(live, domain_));
  BFS_ASSIGN_OR_RETURN(CheckpointInfo now,
                       ParseCheckpointXml(live_xml, "libvirt's checkpoint " + name));
  Result<CheckpointInfo> saved = ParseCheckpointXml(saved_xml, path);
  if (!saved.ok()) return saved.status().message();
  if (saved->creation_time == now.creation_time) return std::string();
  return "libvirt's checkpoint " + name + " (created " + now.creation_time +
         ") is not this saveset's (created " + saved->creation_time +
         "): another chain of the domain replaced it";
}

Status LibvirtChain::Redefine(const std::string& name) {
  const std::string path = checkpoints_.Describe(SavedXmlName(name));
  Result<std::string> xml = checkpoints_.ReadAll(SavedXmlName(name), kMaxCheckpointXml);
  if (!xml.ok()) {
    return Status::NotFound("libvirt has no checkpoint " + name + " and " + path +
                            " cannot be read to redefine it");
  }
  BFS_RETURN_IF_ERROR(RedefineCheckpoint(dom_, domain_, *xml, /*validate=*/true));
  log_.Warn("libvirt had lost checkpoint " + name + ": redefined it from " + path);
  return Status::Ok();
}

Status LibvirtChain::RemoveOurCheckpoints() {
  BFS_ASSIGN_OR_RETURN(std::vector<std::string> names, ListCheckpointNames(dom_, domain_));
  std::erase_if(names, [](const std::string& n) { return !IsOurCheckpoint(n); });
  std::sort(names.begin(), names.end(), [](const std::string& a, const std::string& b) {
    return *CheckpointNumber(a) > *CheckpointNumber(b);
  });
  for (const std::string& n : names) {
    log_.Info("removing old checkpoint " + n);
    Status s = DeleteCheckpoint(dom_, domain_, n);
    if (s.ok()) continue;
    // A checkpoint whose bitmap is gone cannot be deleted the normal way; a new chain must
    // still be possible, so libvirt forgets it (its bitmap, if any, stays in the image).
    log_.Warn(s.message() + ": removing libvirt's record of it only");
    BFS_RETURN_IF_ERROR(DeleteCheckpointMetadata(dom_, domain_, n));
  }
  return Status::Ok();
}

Status LibvirtChain::DropOrphan(const std::string& name) {
  Result<UniqueCheckpoint> cpt = LookupCheckpoint(dom_, domain_, name);
  if (!cpt.ok()) {
    return cpt.status().code() == StatusCode::kNotFound ? Status::Ok() : cpt.status();
  }
  log_.Warn("removing orphaned checkpoint " + name + " (left by an interrupted run)");
  return DeleteCheckpoint(dom_, domain_, name);
}

Result<uint64_t> LibvirtChain::ChangedSince(const std::string& checkpoint) {
  BFS_ASSIGN_OR_RETURN(UniqueCheckpoint cpt, LookupCheckpoint(dom_, domain_, checkpoint));
  return CheckpointChangedBytes(cpt.get(), domain_);
}

Result<std::string> OfflineChainBroken(Host& host, const std::string& domain_xml,
                                       const std::string& domain, const std::string& last) {
  BFS_ASSIGN_OR_RETURN(std::vector<DomainDisk> all, ParseDomainDisks(domain_xml, domain));
  for (const DomainDisk& d : all) {
    if (d.format != "qcow2") continue;
    BFS_ASSIGN_OR_RETURN(bool ok, ImageHasBitmap(host, d.source, last));
    if (!ok) return "disk " + d.target + " (" + d.source + ") has no usable bitmap " + last;
  }
  return std::string();
}

}  // namespace backupfs
