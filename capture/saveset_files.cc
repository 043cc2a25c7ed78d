#include "capture/saveset_files.h"

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

}  // namespace

Status CheckSavesetDomain(const std::string& dir, const std::string& domain) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.ends_with(".cpt") && name != domain + ".cpt") {
      return Status::InvalidArgument(dir + " holds the saveset of another domain (" + name +
                                     "): use a directory per domain");
    }
    if (name.starts_with("vmconfig.") && name.ends_with(".xml")) {
      Result<std::string> xml = ReadWholeFile(entry.path().string());
      Result<std::string> other =
          xml.ok() ? ParseDomainName(*xml, entry.path().string()) : xml.status();
      // An unreadable or foreign file proves nothing about the saveset's domain: only a name.
      if (other.ok() && !other->empty() && *other != domain) {
        return Status::InvalidArgument(dir + " holds the saveset of another domain, " + *other +
                                       " (" + name + "): use a directory per domain");
      }
    }
  }
  if (ec) return Status::IOError("cannot list " + dir + ": " + ec.message());
  return Status::Ok();
}

Result<std::string> MoveChainAside(const std::string& dir, const std::string& keep) {
  const fs::path aside = fs::path(dir) / ("broken-chain." + std::to_string(std::time(nullptr)));
  std::error_code ec;
  if (!fs::create_directory(aside, ec)) {
    return Status::IOError("cannot create " + aside.string() + ": " + ec.message());
  }
  std::vector<fs::path> moving;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (entry.path() == aside || entry.path() == fs::path(keep) ||
        name.starts_with("broken-chain.")) {
      continue;
    }
    moving.push_back(entry.path());
  }
  if (ec) return Status::IOError("cannot list " + dir + ": " + ec.message());
  for (const fs::path& p : moving) {
    fs::rename(p, aside / p.filename(), ec);
    if (ec) return Status::IOError("cannot move " + p.string() + ": " + ec.message());
  }
  return aside.string();
}

void RemoveDataFile(const std::string& path) {
  for (const char* suffix : {"", ".idx", ".chksum"}) {
    std::error_code ec;
    fs::remove(path + suffix, ec);
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
  const std::string path = dir + "/" + disk.target + "." + id + ".qcow.json";
  Result<std::string> info =
      host.RunChecked({"qemu-img", "info", disk.source, "--output", "json", "--force-share"});
  Status s = info.ok() ? WriteTextAtomically(path, *info) : info.status();
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
    const std::string target = dir + "/" + name + (copy ? "" : "." + id);
    Result<std::string> bytes = host.ReadFile(f.path);  // firmware: small (NVRAM: 128 KiB)
    Status s = bytes.ok() ? WriteTextAtomically(target, *bytes) : bytes.status();
    if (!s.ok()) {
      log.Warn("domain " + domain + ": cannot save its " + f.setting + " " + f.path + ": " +
               s.message());
      continue;
    }
    log.Info("saved the " + f.setting + " " + f.path + " as " + target);
  }
}

Status SavesetFiles::SaveAll(virDomainPtr dom, const std::string& domain_xml,
                             const std::vector<DomainDisk>& disks, bool copy,
                             const std::string& checkpoint,
                             const std::vector<std::string>& checkpoint_list) const {
  for (const DomainDisk& d : disks) SaveImageInfo(d);
  SaveBootFiles(domain_xml, copy);
  BFS_RETURN_IF_ERROR(WriteTextAtomically(dir + "/vmconfig." + id + ".xml", domain_xml));
  Result<bool> autostart = DomainAutostart(dom, domain);
  if (autostart.ok() && *autostart)
    BFS_RETURN_IF_ERROR(WriteTextAtomically(dir + "/autostart." + id, "True"));
  if (checkpoint.empty()) return Status::Ok();
  std::error_code ec;
  fs::create_directories(checkpoint_dir, ec);
  if (ec) return Status::IOError("cannot create " + checkpoint_dir + ": " + ec.message());
  BFS_ASSIGN_OR_RETURN(UniqueCheckpoint cpt, LookupCheckpoint(dom, domain, checkpoint));
  BFS_ASSIGN_OR_RETURN(std::string xml, CheckpointXml(cpt.get(), domain));
  BFS_RETURN_IF_ERROR(WriteTextAtomically(checkpoint_dir + "/" + checkpoint + ".xml", xml));
  return WriteCheckpointList(CheckpointListPath(dir, domain), checkpoint_list);
}

}  // namespace backupfs
