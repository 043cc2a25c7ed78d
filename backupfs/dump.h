// `backupfs-restore -a dump`: the metadata and frames of every data file as JSON, a superset
// of `virtnbdrestore -a dump` (its metadata keys first, as written; then ours).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "stream/status.h"

namespace backupfs {

// One data file: its metadata keys as stored, plus "dataFile" (the name), "fileSize",
// "index" ("sidecar" | "none"), and "frames": [{"kind", "start", "length", "fileOffset",
// and for compressed data frames "storedSize" and "chunks"}].
Result<nlohmann::ordered_json> DumpDataFile(const std::string& path);

}  // namespace backupfs
