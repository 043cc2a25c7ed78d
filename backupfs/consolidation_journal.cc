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

// Written atomically, and the rename made durable.
Status WriteDurably(const std::string& path, const std::string& text) {
  BFS_RETURN_IF_ERROR(WriteTextAtomically(path, text));
  return FsyncParentDir(path);
}

Status RemoveIfThere(const std::string& path) {
  if (::unlink(path.c_str()) == 0 || errno == ENOENT) return Status::Ok();
  return Status::FromErrno("cannot remove " + path, errno);
}

Status Install(const std::string& dir, const std::string& from, const std::string& to) {
  const std::string src = dir + "/" + from;
  const std::string dst = dir + "/" + to;
  std::error_code ec;
  if (!fs::exists(src, ec)) return Status::Ok();  // installed by an earlier roll forward
  fs::create_directories(fs::path(dst).parent_path(), ec);
  if (::rename(src.c_str(), dst.c_str()) != 0) {
    return Status::FromErrno("cannot rename " + src + " to " + dst, errno);
  }
  return Status::Ok();
}

// The directories the roll forward changed, fsynced so that its renames and removals last.
Status FsyncTouchedDirs(const std::string& dir, const ConsolidationJournal& j) {
  std::set<std::string> dirs = {dir};
  for (const auto& [from, to] : j.install) dirs.insert(fs::path(dir + "/" + to).parent_path());
  for (const std::string& r : j.remove) dirs.insert(fs::path(dir + "/" + r).parent_path());
  for (const std::string& d : dirs) {
    std::error_code ec;
    if (!fs::is_directory(d, ec)) continue;
    BFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(d, O_RDONLY | O_DIRECTORY));
    BFS_RETURN_IF_ERROR(FsyncFile(fd.get(), d));
  }
  return Status::Ok();
}

Status AddPending(const std::string& dir, const ConsolidationJournal& j) {
  if (j.libvirt_checkpoints.empty()) return Status::Ok();
  BFS_ASSIGN_OR_RETURN(PendingCheckpoints pending, ReadPendingCheckpoints(dir));
  if (pending.domain.empty()) pending.domain = j.domain;
  for (const std::string& c : j.libvirt_checkpoints) {
    if (std::find(pending.checkpoints.begin(), pending.checkpoints.end(), c) ==
        pending.checkpoints.end()) {
      pending.checkpoints.push_back(c);
    }
  }
  return WritePendingCheckpoints(dir, pending);
}

// Everything in the staging directory but the journal (what a killed run may have left there).
Status RemoveStagedLeftovers(const std::string& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(StagingDir(dir), ec)) {
    if (e.path() == JournalPath(dir)) continue;
    fs::remove_all(e.path(), ec);
    if (ec) return Status::IOError("cannot remove " + e.path().string() + ": " + ec.message());
  }
  if (ec) return Status::IOError("cannot list " + StagingDir(dir) + ": " + ec.message());
  return Status::Ok();
}

// The journal goes last but for the (then empty) staging directory: a staging directory with
// files and no journal is always a consolidation that did not commit.
Status RollForward(const std::string& dir, const ConsolidationJournal& j) {
  for (const auto& [from, to] : j.install) BFS_RETURN_IF_ERROR(Install(dir, from, to));
  for (const std::string& r : j.remove) BFS_RETURN_IF_ERROR(RemoveIfThere(dir + "/" + r));
  BFS_RETURN_IF_ERROR(FsyncTouchedDirs(dir, j));
  BFS_RETURN_IF_ERROR(AddPending(dir, j));
  BFS_RETURN_IF_ERROR(RemoveStagedLeftovers(dir));
  BFS_RETURN_IF_ERROR(RemoveIfThere(JournalPath(dir)));  // the end of the consolidation
  return Status::Ok();
}

Status RemoveStaging(const std::string& dir) {
  std::error_code ec;
  fs::remove_all(StagingDir(dir), ec);
  if (ec) return Status::IOError("cannot remove " + StagingDir(dir) + ": " + ec.message());
  return FsyncParentDir(StagingDir(dir));
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
  const std::string name = std::string(kStagingDirName) + "/journal.json";
  Result<std::string> text = saveset.ReadAll(name);
  if (text.status().code() == StatusCode::kNotFound) return std::optional<ConsolidationJournal>();
  BFS_RETURN_IF_ERROR(text.status());
  BFS_ASSIGN_OR_RETURN(ConsolidationJournal j, DecodeJournal(*text, saveset.Describe(name)));
  return std::optional<ConsolidationJournal>(std::move(j));
}

Status CommitJournal(const std::string& saveset, const ConsolidationJournal& journal) {
  return WriteDurably(JournalPath(saveset), EncodeJournal(journal));
}

Result<std::string> CompleteConsolidation(const std::string& saveset) {
  std::error_code ec;
  if (!fs::exists(StagingDir(saveset), ec)) return std::string();
  BFS_ASSIGN_OR_RETURN(std::optional<ConsolidationJournal> j, ReadJournal(saveset));
  if (!j && fs::is_empty(StagingDir(saveset), ec)) {
    // Killed just after making it, or just before removing it at the very end: either way
    // the saveset is whole and nothing is worth a word.
    BFS_RETURN_IF_ERROR(RemoveStaging(saveset));
    return std::string();
  }
  if (!j) {
    BFS_RETURN_IF_ERROR(RemoveStaging(saveset));
    return "removed " + StagingDir(saveset) + ", left by a consolidation interrupted before " +
           "its commit: the saveset is as it was";
  }
  BFS_RETURN_IF_ERROR(RollForward(saveset, *j));
  BFS_RETURN_IF_ERROR(RemoveStaging(saveset));
  return "completed the consolidation at " + j->point + " that " + JournalPath(saveset) +
         " recorded";
}

Result<PendingCheckpoints> ReadPendingCheckpoints(const std::string& saveset) {
  const std::string path = saveset + "/" + kPendingCheckpointsName;
  PendingCheckpoints out;
  std::error_code ec;
  if (!fs::exists(path, ec)) return out;
  BFS_ASSIGN_OR_RETURN(std::string text, ReadWholeFile(path));
  auto j = nlohmann::json::parse(text, nullptr, false);
  try {
    if (j.is_discarded()) throw std::runtime_error("not JSON");
    out.domain = j.at("domain").get<std::string>();
    out.checkpoints = j.at("checkpoints").get<std::vector<std::string>>();
  } catch (const std::exception& e) {
    return Status::Corruption(path + ": not a list of checkpoints to delete: " + e.what());
  }
  return out;
}

Status WritePendingCheckpoints(const std::string& saveset, const PendingCheckpoints& pending) {
  const std::string path = saveset + "/" + kPendingCheckpointsName;
  if (pending.checkpoints.empty()) {
    BFS_RETURN_IF_ERROR(RemoveIfThere(path));
    return FsyncParentDir(path);
  }
  nlohmann::ordered_json j;
  j["domain"] = pending.domain;
  j["checkpoints"] = pending.checkpoints;
  return WriteDurably(path, j.dump(4) + "\n");
}

}  // namespace backupfs
