#include "capture/saveset_files.h"

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "capture/checkpoints.h"
#include "capture/libvirt.h"
#include "common/domain_xml.h"
#include "common/subprocess.h"
#include "stream/file.h"

namespace backupfs {

namespace {

namespace fs = std::filesystem;

// A vmconfig or a firmware file: small (NVRAM: 128 KiB). More is not a file of ours.
constexpr uint64_t kMaxSmallFile = 64u << 20;
// Subdirectories of a saveset: checkpoints/, and little else.
constexpr int kMaxDepth = 8;

// Written as virtnbdbackup writes them (and as this tool always did locally).
PutOptions SmallFile() {
  PutOptions put;
  put.mode = 0644;
  return put;
}

// The files and directories of `dir` ("" the saveset); a directory that does not exist (a
// store's prefix without objects) has none.
Result<std::vector<StoredObject>> ListOrNothing(const Storage& saveset, const std::string& dir) {
  Result<std::vector<StoredObject>> list = saveset.List(dir);
  if (list.status().code() == StatusCode::kNotFound) return std::vector<StoredObject>();
  return list;
}

// Moves every file under `from` to the same name under `to`, subdirectories too.
Status MoveTree(Storage& saveset, const std::string& from, const std::string& to, int depth) {
  if (depth > kMaxDepth) {
    return Status::InvalidArgument(saveset.Describe(from) + ": directories nested too deep");
  }
  BFS_RETURN_IF_ERROR(saveset.MakeDir(to));
  BFS_ASSIGN_OR_RETURN(std::vector<StoredObject> entries, ListOrNothing(saveset, from));
  for (const StoredObject& e : entries) {
    const std::string name = e.is_dir() ? e.name.substr(0, e.name.size() - 1) : e.name;
    Status s = e.is_dir() ? MoveTree(saveset, JoinName(from, name), JoinName(to, name), depth + 1)
                          : saveset.Rename(JoinName(from, name), JoinName(to, name));
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

}  // namespace

Result<std::vector<StoredObject>> ListSavesetTop(const Storage& saveset) {
  return ListOrNothing(saveset, "");
}

Status CheckSavesetDomain(const Storage& saveset, const std::string& domain) {
  BFS_ASSIGN_OR_RETURN(std::vector<StoredObject> top, ListSavesetTop(saveset));
  return CheckSavesetDomain(saveset, top, domain);
}

std::chrono::nanoseconds WaitForALaterSecond(const std::vector<StoredObject>& top, int64_t now_ns) {
  constexpr int64_t kSecond = 1000000000;
  int64_t newest = -1;
  for (const StoredObject& e : top) {
    if (!e.is_dir() && e.name.ends_with(".data")) newest = std::max(newest, e.mtime_ns);
  }
  if (newest < 0) return std::chrono::nanoseconds(0);
  const int64_t next_second = (newest / kSecond + 1) * kSecond;
  if (next_second <= now_ns) return std::chrono::nanoseconds(0);
  return std::min<std::chrono::nanoseconds>(std::chrono::nanoseconds(next_second - now_ns),
                                            kMaxWaitForALaterSecond);
}

Status CheckSavesetDomain(const Storage& saveset, const std::vector<StoredObject>& entries,
                          const std::string& domain) {
  const std::string& dir = saveset.address();
  // Every run checks this before it writes, so the vmconfigs of a saveset name one domain: the
  // first that names any tells (in a store each one read is a request, and a chain has many).
  bool named = false;
  for (const StoredObject& entry : entries) {
    const std::string& name = entry.name;
    if (name.ends_with(".cpt") && name != domain + ".cpt") {
      return Status::InvalidArgument(dir + " holds the saveset of another domain (" + name +
                                     "): use a directory per domain");
    }
    if (!named && name.starts_with("vmconfig.") && name.ends_with(".xml")) {
      Result<std::string> xml = saveset.ReadAll(name, kMaxSmallFile);
      Result<std::string> other =
          xml.ok() ? ParseDomainName(*xml, saveset.Describe(name)) : xml.status();
      // An unreadable or foreign file proves nothing about the saveset's domain: only a name.
      named = other.ok() && !other->empty();
      if (named && *other != domain) {
        return Status::InvalidArgument(dir + " holds the saveset of another domain, " + *other +
                                       " (" + name + "): use a directory per domain");
      }
    }
  }
  return Status::Ok();
}

Result<std::string> MoveChainAside(Storage& saveset, const std::string& keep) {
  const std::string aside = "broken-chain." + std::to_string(std::time(nullptr));
  // A file of that name, or (a store has no directories to Stat) objects under it.
  BFS_ASSIGN_OR_RETURN(std::optional<StoredObject> taken, saveset.Stat(aside));
  BFS_ASSIGN_OR_RETURN(bool filled, saveset.Sub(aside)->Exists());
  if (taken || filled) {
    return Status::IOError("cannot create " + saveset.Describe(aside) + ": it exists");
  }
  BFS_RETURN_IF_ERROR(saveset.MakeDir(aside));
  BFS_ASSIGN_OR_RETURN(std::vector<StoredObject> entries, ListOrNothing(saveset, ""));
  const bool local = saveset.LocalDir().has_value();
  for (const StoredObject& e : entries) {
    const std::string name = e.is_dir() ? e.name.substr(0, e.name.size() - 1) : e.name;
    if (name == aside || name == keep || name.starts_with("broken-chain.")) continue;
    // A local subdirectory goes in one rename; a store's "directory" object by object.
    Status s = e.is_dir() && !local ? MoveTree(saveset, name, JoinName(aside, name), 1)
                                    : saveset.Rename(e.name, JoinName(aside, name));
    if (!s.ok()) return s;
  }
  return saveset.Describe(aside);
}

void RemoveDataFile(Storage& saveset, const std::string& name) {
  for (const char* suffix : {"", ".idx", ".chksum"}) {
    [[maybe_unused]] Status ignored = saveset.Remove(name + suffix);
  }
}

Result<bool> ImageHasBitmap(Host& host, const std::string& image, const std::string& name) {
  BFS_ASSIGN_OR_RETURN(std::string out, host.RunChecked({"qemu-img", "info", "--output=json",
                                                         "--force-share", image}));
  nlohmann::json j = nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false);
  const nlohmann::json* bitmaps = nullptr;
  if (j.is_object() && j.contains("format-specific")) {
    const auto& fmt = j["format-specific"];
    if (fmt.is_object() && fmt.contains("data") && fmt["data"].is_object() &&
        fmt["data"].contains("bitmaps")) {
      bitmaps = &fmt["data"]["bitmaps"];
    }
  }
  if (bitmaps == nullptr || !bitmaps->is_array()) return false;
  for (const auto& b : *bitmaps) {
    if (!b.is_object() || b.value("name", "") != name) continue;
    for (const auto& flag : b.value("flags", nlohmann::json::array())) {
      if (flag == "in-use" || flag == "inconsistent") return false;
    }
    return true;
  }
  return false;
}

void SavesetFiles::SaveImageInfo(const DomainDisk& disk) const {
  if (disk.format != "qcow2") return;
  const std::string name = disk.target + "." + id + ".qcow.json";
  Result<std::string> info =
      host.RunChecked({"qemu-img", "info", disk.source, "--output", "json", "--force-share"});
  Status s = info.ok() ? saveset.PutText(name, *info, SmallFile()) : info.status();
  if (!s.ok()) log.Warn("domain " + domain + " disk " + disk.target + ": " + s.message());
}

void SavesetFiles::SaveBootFiles(const std::string& domain_xml, bool copy) const {
  Result<std::vector<BootFile>> files = ParseBootFiles(domain_xml, domain);
  if (!files.ok()) {
    log.Warn(files.status().message());
    return;
  }
  for (const BootFile& f : *files) {
    const std::string name = fs::path(f.path).filename().string();
    const std::string target = name + (copy ? "" : "." + id);
    Result<std::string> bytes = host.ReadFile(f.path);  // firmware: small (NVRAM: 128 KiB)
    Status s = bytes.ok() ? saveset.PutText(target, *bytes, SmallFile()) : bytes.status();
    if (!s.ok()) {
      log.Warn("domain " + domain + ": cannot save its " + f.setting + " " + f.path + ": " +
               s.message());
      continue;
    }
    log.Info("saved the " + f.setting + " " + f.path + " as " + saveset.Describe(target));
  }
}

Status SavesetFiles::SaveAll(virDomainPtr dom, const std::string& domain_xml,
                             const std::vector<DomainDisk>& disks, bool copy,
                             const std::string& checkpoint,
                             const std::vector<std::string>& checkpoint_list) const {
  for (const DomainDisk& d : disks) SaveImageInfo(d);
  SaveBootFiles(domain_xml, copy);
  BFS_RETURN_IF_ERROR(saveset.PutText("vmconfig." + id + ".xml", domain_xml, SmallFile()));
  Result<bool> autostart = DomainAutostart(dom, domain);
  if (autostart.ok() && *autostart) {
    BFS_RETURN_IF_ERROR(saveset.PutText("autostart." + id, "True", SmallFile()));
  }
  if (checkpoint.empty()) return Status::Ok();
  BFS_RETURN_IF_ERROR(checkpoints.MakeDir(""));
  BFS_ASSIGN_OR_RETURN(UniqueCheckpoint cpt, LookupCheckpoint(dom, domain, checkpoint));
  BFS_ASSIGN_OR_RETURN(std::string xml, CheckpointXml(cpt.get(), domain));
  BFS_RETURN_IF_ERROR(checkpoints.PutText(checkpoint + ".xml", xml, SmallFile()));
  BFS_RETURN_IF_ERROR(lock.Held().WithSuffix(": stopped before its checkpoint list " +
                                             saveset.Describe(CheckpointListName(domain)) +
                                             " was written"));
  return WriteCheckpointList(saveset, CheckpointListName(domain), checkpoint_list);
}

}  // namespace backupfs
