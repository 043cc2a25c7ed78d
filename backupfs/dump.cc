#include "backupfs/dump.h"

#include <filesystem>

#include "stream/scanner.h"

namespace backupfs {

Result<nlohmann::ordered_json> DumpDataFile(const Storage& saveset, const std::string& name) {
  BFS_ASSIGN_OR_RETURN(std::unique_ptr<StoredFile> src, saveset.Open(name));
  BFS_ASSIGN_OR_RETURN(StreamLayout layout, ScanStream(*src));
  BFS_ASSIGN_OR_RETURN(std::optional<StoredObject> sidecar, saveset.Stat(name + ".idx"));
  nlohmann::ordered_json out = layout.meta.raw;
  out["dataFile"] = std::filesystem::path(name).filename().string();
  out["fileSize"] = layout.file_size;
  out["index"] = sidecar ? "sidecar" : "none";
  auto frames = nlohmann::ordered_json::array();
  for (const FrameRecord& f : layout.frames) {
    nlohmann::ordered_json j;
    j["kind"] = std::string(FrameKindName(f.header.kind));
    j["start"] = f.header.start;
    j["length"] = f.header.length;
    j["fileOffset"] = f.header_offset;
    if (layout.meta.compressed() && f.header.kind == FrameKind::kData) {
      j["storedSize"] = f.stored_size;
      j["chunks"] = f.chunk_stored;
    }
    frames.push_back(std::move(j));
  }
  out["frames"] = std::move(frames);
  return out;
}

}  // namespace backupfs
