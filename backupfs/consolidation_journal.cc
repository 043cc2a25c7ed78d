#include "backupfs/consolidation_journal.h"

#include "stream/local_storage.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "stream/file.h"

namespace backupfs {
namespace {

namespace fs = std::filesystem;

constexpr int kJournalVersion = 1;

// A path relative to the saveset that stays inside it.
bool Contained(const std::string& path) {
  if (path.empty() || path.front() == '/') return false;
  for (const auto& part : fs::path(path)) {
    if (part == ".." || part == ".") return false;
  }
  return true;
}

bool Staged(const std::string& path) {
  const std::string prefix = std::string(kStagingDirName) + "/";
  return Contained(path) && path.starts_with(prefix) && path.size() > prefix.size();
}

constexpr unsigned kMaxStagingDepth = 4;  // staging holds files; a deeper tree is not ours

std::string Parent(const std::string& name) {
  const size_t slash = name.rfind('/');
  return slash == std::string::npos ? "" : name.substr(0, slash);
}

// Written atomically, and the rename made durable.
Status PutDurably(Storage& saveset, const std::string& name, const std::string& text) {
  PutOptions put;
  put.mode = 0644;
  BFS_RETURN_IF_ERROR(saveset.PutText(name, text, put));
  return SyncDirs(saveset, {Parent(name)});
}

// Moves a staged file into place; one that is gone was moved by an earlier roll forward.
Status Install(Storage& saveset, const std::string& from, const std::string& to) {
  BFS_ASSIGN_OR_RETURN(std::optional<StoredObject> staged, saveset.Stat(from));
  if (!staged || staged->is_dir()) return Status::Ok();
  BFS_RETURN_IF_ERROR(saveset.MakeDir(Parent(to)));
  return saveset.Rename(from, to);
}

// The directories the roll forward changed, fsynced so that its renames and removals last.
Status SyncTouchedDirs(const Storage& saveset, const ConsolidationJournal& j) {
  std::set<std::string> dirs = {""};
  for (const auto& [from, to] : j.install) dirs.insert(Parent(to));
  for (const std::string& r : j.remove) dirs.insert(Parent(r));
  return SyncDirs(saveset, std::vector<std::string>(dirs.begin(), dirs.end()));
}

Status AddPending(Storage& saveset, const ConsolidationJournal& j) {
  if (j.libvirt_checkpoints.empty()) return Status::Ok();
  BFS_ASSIGN_OR_RETURN(PendingCheckpoints pending, ReadPendingCheckpoints(saveset));
  if (pending.domain.empty()) pending.domain = j.domain;
  for (const std::string& c : j.libvirt_checkpoints) {
    if (std::find(pending.checkpoints.begin(), pending.checkpoints.end(), c) ==
        pending.checkpoints.end()) {
      pending.checkpoints.push_back(c);
    }
  }
  return WritePendingCheckpoints(saveset, pending);
}

// What is under `dir`; nullopt when there is no such directory (in a store: nothing under it).
Result<std::optional<std::vector<StoredObject>>> ListIfThere(const Storage& saveset,
                                                             const std::string& dir) {
  Result<std::vector<StoredObject>> listed = saveset.List(dir);
  if (listed.status().code() == StatusCode::kNotFound) {
    return std::optional<std::vector<StoredObject>>();
  }
  BFS_RETURN_IF_ERROR(listed.status());
  return std::optional<std::vector<StoredObject>>(std::move(*listed));
}

// A directory of a local saveset once it is empty; a store has no directories to remove.
Status RemoveEmptyDir(const Storage& saveset, const std::string& dir) {
  const std::optional<std::string> local = saveset.LocalDir();
  if (!local) return Status::Ok();
  const std::string path = JoinName(*local, dir);
  if (::rmdir(path.c_str()) != 0 && errno != ENOENT) {
    return Status::FromErrno("cannot remove " + path, errno);
  }
  return Status::Ok();
}

// Everything under `dir` but `keep`, and `dir` too when nothing is kept.
Status RemoveTree(Storage& saveset, const std::string& dir, const std::string& keep,
                  unsigned depth = 0) {
  if (depth > kMaxStagingDepth) {
    return Status::FailedPrecondition(saveset.Describe(dir) + ": deeper than " +
                                      std::to_string(kMaxStagingDepth) +
                                      " levels: not a staging area a consolidation made");
  }
  BFS_ASSIGN_OR_RETURN(std::optional<std::vector<StoredObject>> listed, ListIfThere(saveset, dir));
  if (!listed) return Status::Ok();
  bool kept = false;
  for (const StoredObject& o : *listed) {
    const std::string name =
        JoinName(dir, o.is_dir() ? o.name.substr(0, o.name.size() - 1) : o.name);
    if (name == keep) {
      kept = true;
    } else if (o.is_dir()) {
      BFS_RETURN_IF_ERROR(RemoveTree(saveset, name, keep, depth + 1));
    } else {
      BFS_RETURN_IF_ERROR(saveset.Remove(name));
    }
  }
  return kept ? Status::Ok() : RemoveEmptyDir(saveset, dir);
}

// The journal goes last but for the (then empty) staging directory: a staging directory with
// files and no journal is always a consolidation that did not commit.
Status RollForward(Storage& saveset, const ConsolidationJournal& j) {
  for (const auto& [from, to] : j.install) BFS_RETURN_IF_ERROR(Install(saveset, from, to));
  for (const std::string& r : j.remove) BFS_RETURN_IF_ERROR(saveset.Remove(r));
  BFS_RETURN_IF_ERROR(SyncTouchedDirs(saveset, j));
  BFS_RETURN_IF_ERROR(AddPending(saveset, j));
  BFS_RETURN_IF_ERROR(RemoveTree(saveset, kStagingDirName, kJournalName));  // leftovers
  BFS_RETURN_IF_ERROR(saveset.Remove(kJournalName));  // the end of the consolidation
  return Status::Ok();
}

Status RemoveStaging(Storage& saveset) {
  BFS_RETURN_IF_ERROR(RemoveTree(saveset, kStagingDirName, ""));
  return SyncDirs(saveset, {""});
}

// Writers a killed run left under the staging area: `.partial` files, or a store's
// multipart uploads never completed (invisible to a listing, but stored and billed).
Result<bool> RemoveUnfinishedStaging(const Storage& saveset) {
  BFS_ASSIGN_OR_RETURN(std::vector<std::string> removed,
                       saveset.Sub(kStagingDirName)->RemoveUnfinished());
  return !removed.empty();
}

}  // namespace

std::string EncodeJournal(const ConsolidationJournal& j) {
  nlohmann::ordered_json out;
  out["version"] = kJournalVersion;
  out["point"] = j.point;
  out["install"] = nlohmann::ordered_json::array();
  for (const auto& [from, to] : j.install) out["install"].push_back({{"from", from}, {"to", to}});
  out["remove"] = j.remove;
  out["domain"] = j.domain;
  out["libvirtCheckpoints"] = j.libvirt_checkpoints;
  return out.dump(4) + "\n";
}

Result<ConsolidationJournal> DecodeJournal(const std::string& text, const std::string& file) {
  auto bad = [&](const std::string& why) {
    return Status::Corruption(file + ": not a consolidation journal: " + why);
  };
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  if (j.value("version", 0) != kJournalVersion) return bad("unknown version");
  ConsolidationJournal out;
  try {
    out.point = j.at("point").get<std::string>();
    for (const auto& e : j.at("install")) {
      out.install.emplace_back(e.at("from").get<std::string>(), e.at("to").get<std::string>());
    }
    out.remove = j.at("remove").get<std::vector<std::string>>();
    out.domain = j.at("domain").get<std::string>();
    out.libvirt_checkpoints = j.at("libvirtCheckpoints").get<std::vector<std::string>>();
  } catch (const nlohmann::json::exception& e) {
    return bad(e.what());
  }
  for (const auto& [from, to] : out.install) {
    if (!Staged(from) || !Contained(to) || Staged(to)) {
      return bad("it moves " + from + " to " + to + ", outside the saveset or the staging area");
    }
  }
  for (const std::string& r : out.remove) {
    if (!Contained(r) || Staged(r)) return bad("it removes " + r + ", outside the saveset");
  }
  return out;
}

std::string StagingDir(const std::string& saveset) { return saveset + "/" + kStagingDirName; }
std::string JournalPath(const std::string& saveset) {
  return StagingDir(saveset) + "/journal.json";
}

Result<std::optional<ConsolidationJournal>> ReadJournal(const std::string& saveset) {
  return ReadJournal(*OpenLocalStorage(saveset));
}

Result<std::optional<ConsolidationJournal>> ReadJournal(const Storage& saveset) {
  const std::string name = kJournalName;
  Result<std::string> text = saveset.ReadAll(name);
  if (text.status().code() == StatusCode::kNotFound) return std::optional<ConsolidationJournal>();
  BFS_RETURN_IF_ERROR(text.status());
  BFS_ASSIGN_OR_RETURN(ConsolidationJournal j, DecodeJournal(*text, saveset.Describe(name)));
  return std::optional<ConsolidationJournal>(std::move(j));
}

Status CommitJournal(Storage& saveset, const ConsolidationJournal& journal) {
  return PutDurably(saveset, kJournalName, EncodeJournal(journal));
}

Status CommitJournal(const std::string& saveset, const ConsolidationJournal& journal) {
  return CommitJournal(*OpenLocalStorage(saveset), journal);
}

Result<std::string> CompleteConsolidation(Storage& saveset) {
  BFS_ASSIGN_OR_RETURN(const bool unfinished, RemoveUnfinishedStaging(saveset));
  BFS_ASSIGN_OR_RETURN(std::optional<std::vector<StoredObject>> staged,
                       ListIfThere(saveset, kStagingDirName));
  if (!staged && !unfinished) return std::string();  // the common case: no consolidation
  const std::string staging = saveset.Describe(kStagingDirName);
  BFS_ASSIGN_OR_RETURN(std::optional<ConsolidationJournal> j, ReadJournal(saveset));
  if (!j && (!staged || staged->empty()) && !unfinished) {
    // Killed just after making it, or just before removing it at the very end: either way
    // the saveset is whole and nothing is worth a word.
    BFS_RETURN_IF_ERROR(RemoveStaging(saveset));
    return std::string();
  }
  if (!j) {
    BFS_RETURN_IF_ERROR(RemoveStaging(saveset));
    return "removed " + staging + ", left by a consolidation interrupted before " +
           "its commit: the saveset is as it was";
  }
  BFS_RETURN_IF_ERROR(RollForward(saveset, *j));
  BFS_RETURN_IF_ERROR(RemoveStaging(saveset));
  return "completed the consolidation at " + j->point + " that " + saveset.Describe(kJournalName) +
         " recorded";
}

Result<std::string> CompleteConsolidation(const std::string& saveset) {
  return CompleteConsolidation(*OpenLocalStorage(saveset));
}

Status SyncDirs(const Storage& saveset, const std::vector<std::string>& dirs) {
  const std::optional<std::string> local = saveset.LocalDir();
  if (!local) return Status::Ok();
  for (const std::string& d : dirs) {
    const std::string path = d.empty() ? *local : JoinName(*local, d);
    std::error_code ec;
    if (!fs::is_directory(path, ec)) continue;
    BFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_RDONLY | O_DIRECTORY));
    BFS_RETURN_IF_ERROR(FsyncFile(fd.get(), path));
  }
  return Status::Ok();
}

Result<PendingCheckpoints> ReadPendingCheckpoints(const Storage& saveset) {
  const std::string path = saveset.Describe(kPendingCheckpointsName);
  PendingCheckpoints out;
  Result<std::string> text = saveset.ReadAll(kPendingCheckpointsName);
  if (text.status().code() == StatusCode::kNotFound) return out;
  BFS_RETURN_IF_ERROR(text.status());
  auto j = nlohmann::json::parse(*text, nullptr, false);
  try {
    if (j.is_discarded()) throw std::runtime_error("not JSON");
    out.domain = j.at("domain").get<std::string>();
    out.checkpoints = j.at("checkpoints").get<std::vector<std::string>>();
  } catch (const std::exception& e) {
    return Status::Corruption(path + ": not a list of checkpoints to delete: " + e.what());
  }
  return out;
}

Result<PendingCheckpoints> ReadPendingCheckpoints(const std::string& saveset) {
  return ReadPendingCheckpoints(*OpenLocalStorage(saveset));
}

Status WritePendingCheckpoints(Storage& saveset, const PendingCheckpoints& pending) {
  if (pending.checkpoints.empty()) {
    BFS_RETURN_IF_ERROR(saveset.Remove(kPendingCheckpointsName));
    return SyncDirs(saveset, {""});
  }
  nlohmann::ordered_json j;
  j["domain"] = pending.domain;
  j["checkpoints"] = pending.checkpoints;
  return PutDurably(saveset, kPendingCheckpointsName, j.dump(4) + "\n");
}

Status WritePendingCheckpoints(const std::string& saveset, const PendingCheckpoints& pending) {
  return WritePendingCheckpoints(*OpenLocalStorage(saveset), pending);
}

}  // namespace backupfs
