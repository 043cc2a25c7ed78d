#include "capture/checkpoints.h"

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "stream/file.h"

namespace backupfs {

namespace {

// Escapes text for an XML attribute or element.
std::string Esc(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '\'':
        out += "&apos;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// A list names each checkpoint once: even a long chain's is a few hundred KiB.
constexpr uint64_t kMaxCheckpointList = 64u << 20;

Result<std::vector<std::string>> ParseCheckpointList(const std::string& text,
                                                     const std::string& what) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_array()) return Status::Corruption(what + ": not a JSON list of checkpoint names");
  std::vector<std::string> names;
  for (const auto& e : j) {
    if (!e.is_string()) return Status::Corruption(what + ": a checkpoint name is not a string");
    names.push_back(e.get<std::string>());
  }
  return names;
}

}  // namespace

std::string CheckpointName(size_t n) { return kCheckpointPrefix + std::to_string(n); }

std::optional<size_t> CheckpointNumber(const std::string& name) {
  const std::string prefix = kCheckpointPrefix;
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) {
    return std::nullopt;
  }
  const char* first = name.data() + prefix.size();
  const char* last = name.data() + name.size();
  size_t n = 0;
  auto [ptr, ec] = std::from_chars(first, last, n);
  if (ec != std::errc() || ptr != last || *first == '+') return std::nullopt;
  return n;
}

bool IsOurCheckpoint(const std::string& name) { return CheckpointNumber(name).has_value(); }

std::string NextCheckpointName(const std::vector<std::string>& list) {
  size_t next = list.size();  // a list of foreign names: as virtnbdbackup counts
  for (const std::string& name : list) {
    if (auto n = CheckpointNumber(name)) next = std::max(next, *n + 1);
  }
  return CheckpointName(next);
}

std::string CheckpointListName(const std::string& domain) { return domain + ".cpt"; }

std::string CheckpointListPath(const std::string& outdir, const std::string& domain) {
  return outdir + "/" + CheckpointListName(domain);
}

Result<std::vector<std::string>> ReadCheckpointList(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return std::vector<std::string>{};
  BFS_ASSIGN_OR_RETURN(std::string text, ReadWholeFile(path));
  return ParseCheckpointList(text, path);
}

Result<std::vector<std::string>> ReadCheckpointList(const Storage& saveset, std::string_view name) {
  Result<std::string> text = saveset.ReadAll(name, kMaxCheckpointList);
  if (text.status().code() == StatusCode::kNotFound) return std::vector<std::string>{};
  BFS_RETURN_IF_ERROR(text.status());
  return ParseCheckpointList(*text, saveset.Describe(name));
}

Status WriteCheckpointList(const std::string& path, const std::vector<std::string>& names) {
  const std::string text = nlohmann::json(names).dump();
  return WriteFileAtomically(
      path, std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()), 0644);
}

Status WriteCheckpointList(Storage& saveset, std::string_view name,
                           const std::vector<std::string>& names) {
  PutOptions put;
  put.mode = 0644;
  return saveset.PutText(name, nlohmann::json(names).dump(), put);
}

std::string BuildCheckpointXml(const std::string& name, const std::string& parent,
                               const std::vector<JobDisk>& disks) {
  std::string x = "<domaincheckpoint>\n  <description>Backup checkpoint</description>\n";
  x += "  <name>" + Esc(name) + "</name>\n";
  if (!parent.empty()) x += "  <parent><name>" + Esc(parent) + "</name></parent>\n";
  x += "  <disks>\n";
  for (const JobDisk& d : disks) {
    x += "    <disk name='" + Esc(d.target) + "' checkpoint='" +
         (d.backup && d.checkpoint ? "bitmap" : "no") + "'/>\n";
  }
  return x + "  </disks>\n</domaincheckpoint>\n";
}

std::string BuildBackupXml(const JobServer& server, const std::string& scratch_dir,
                           const std::string& incremental, const std::vector<JobDisk>& disks) {
  std::string x = "<domainbackup mode='pull'>\n";
  if (!incremental.empty()) x += "  <incremental>" + Esc(incremental) + "</incremental>\n";
  if (server.socket.empty()) {
    x += "  <server transport='tcp' name='" + Esc(server.name) + "' port='" +
         std::to_string(server.port) + "'" + (server.tls ? " tls='yes'" : "") + "/>\n";
  } else {
    x += "  <server transport='unix' socket='" + Esc(server.socket) + "'/>\n";
  }
  x += "  <disks>\n";
  for (const JobDisk& d : disks) {
    if (!d.backup) {
      x += "    <disk name='" + Esc(d.target) + "' backup='no'/>\n";
      continue;
    }
    x += "    <disk name='" + Esc(d.target) + "' backup='yes' type='file'>";
    x += "<scratch file='" + Esc(scratch_dir + "/" + d.target + ".scratch") + "'/></disk>\n";
  }
  return x + "  </disks>\n</domainbackup>\n";
}

}  // namespace backupfs
