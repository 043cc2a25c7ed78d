#include "backupfs/saveset.h"

#include "stream/local_storage.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <tuple>

#include "backupfs/consolidation_journal.h"

namespace backupfs {
namespace {

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Splits "virtnbdbackup.12" into ("virtnbdbackup.", 12) so that numbers sort numerically.
std::pair<std::string, uint64_t> NaturalKey(const std::string& id) {
  size_t digits = id.size();
  while (digits > 0 && std::isdigit(static_cast<unsigned char>(id[digits - 1]))) --digits;
  std::string tail = id.substr(digits);
  uint64_t n = tail.empty() || tail.size() > 18 ? 0 : std::stoull(tail);
  return {id.substr(0, digits), n};
}

bool ChainOrder(const DataFileName& a, const DataFileName& b) {
  auto rank = [](BackupLevel l) {
    return l == BackupLevel::kFull || l == BackupLevel::kCopy ? 0 : 1;
  };
  return std::make_tuple(a.disk, rank(a.level), NaturalKey(a.id), a.file) <
         std::make_tuple(b.disk, rank(b.level), NaturalKey(b.id), b.file);
}

}  // namespace

std::optional<DataFileName> ParseDataFileName(const std::string& name) {
  if (!EndsWith(name, ".data")) return std::nullopt;
  std::string stem = name.substr(0, name.size() - 5);
  size_t dot = stem.find('.');
  if (dot == 0 || dot == std::string::npos) return std::nullopt;
  DataFileName d{name, stem.substr(0, dot), BackupLevel::kFull, "", ""};
  std::string rest = stem.substr(dot + 1);
  if (rest == "full") return d;
  if (rest == "copy") {
    d.level = BackupLevel::kCopy;
    return d;
  }
  for (auto [prefix, level] :
       {std::pair{"inc.", BackupLevel::kInc}, {"diff.", BackupLevel::kDiff}}) {
    std::string p = prefix;
    if (rest.size() > p.size() && rest.compare(0, p.size(), p) == 0) {
      d.level = level;
      d.id = rest.substr(p.size());
      return d;
    }
  }
  return std::nullopt;
}

std::string PointFileShownName(const std::string& file, const std::string& id) {
  if (id.empty() || EndsWith(file, ".log") || ParseDataFileName(file)) return "";
  for (const char* sidecar : {".idx", ".chksum", ".partial"}) {
    if (EndsWith(file, sidecar)) return "";
  }
  if (file == "vmconfig." + id + ".xml") return "vmconfig.xml";
  const std::string qcow = "." + id + ".qcow.json";
  if (EndsWith(file, qcow)) return file.substr(0, file.size() - qcow.size()) + ".qcow.json";
  const std::string suffix = "." + id;
  if (!EndsWith(file, suffix) || file.size() == suffix.size()) return "";
  return file.substr(0, file.size() - suffix.size());
}

Result<SavesetListing> ListSaveset(const std::string& dir, const std::string& disk) {
  return ListSaveset(*OpenLocalStorage(dir), disk);
}

Result<SavesetListing> ListSaveset(const Storage& saveset, const std::string& disk) {
  Result<std::vector<StoredObject>> listed = saveset.List();
  if (!listed.ok()) {
    return listed.status().WithPrefix("cannot read saveset " + saveset.address());
  }
  return ListSaveset(saveset, *listed, disk);
}

Result<SavesetListing> ListSaveset(const Storage& saveset, const std::vector<StoredObject>& listed,
                                   const std::string& disk) {
  SavesetListing out;
  out.dir = saveset.address();
  std::set<std::string> names;
  std::map<std::string, std::string> versions;
  bool staging = false;
  for (const StoredObject& o : listed) {
    if (!o.is_dir()) names.insert(o.name);
    if (!o.is_dir()) versions[o.name] = o.version;
    staging = staging || o.name == std::string(kStagingDirName) + "/";
  }
  // A committed consolidation that is not rolled forward yet: show the saveset it makes.
  std::optional<ConsolidationJournal> journal;
  if (staging) {
    BFS_ASSIGN_OR_RETURN(journal, ReadJournal(saveset));
  }
  std::map<std::string, std::string> staged;  // name -> the staged file that is its content
  if (journal) {
    for (const std::string& r : journal->remove) names.erase(r);
    for (const auto& [from, to] : journal->install) {
      BFS_ASSIGN_OR_RETURN(std::optional<StoredObject> there, saveset.Stat(from));
      if (!there) continue;
      versions[from] = there->version;
      names.insert(to);
      staged[to] = from;
    }
  }
  auto wanted = [&](const std::string& d) { return disk.empty() || d == disk; };
  for (const std::string& name : names) {
    if (EndsWith(name, ".cpt")) out.checkpoint_lists.push_back(name);
    if (EndsWith(name, ".partial")) {
      if (wanted(name.substr(0, name.find('.')))) out.partial_files.push_back(name);
      continue;
    }
    for (const char* sidecar : {".idx", ".chksum"}) {
      if (!EndsWith(name, sidecar)) continue;
      std::string data = name.substr(0, name.size() - std::string(sidecar).size());
      auto parsed = ParseDataFileName(data);
      if (parsed && wanted(parsed->disk) && names.count(data) == 0)
        out.orphan_sidecars.push_back(name);
    }
    auto parsed = ParseDataFileName(name);
    if (!parsed || !wanted(parsed->disk)) continue;
    if (auto s = staged.find(name); s != staged.end()) parsed->file = s->second;
    parsed->version = versions[parsed->file];
    out.data_files.push_back(*parsed);
  }
  std::sort(out.data_files.begin(), out.data_files.end(), ChainOrder);
  return out;
}

}  // namespace backupfs
