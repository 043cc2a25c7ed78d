// `backupfs-restore -a dump`: the metadata and frames of every data file as JSON, a superset
// of `virtnbdrestore -a dump` (its metadata keys first, as written; then ours).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "stream/status.h"
#include "stream/storage.h"

namespace backupfs {

// Data file `name` of `saveset`: its metadata keys as stored, plus "dataFile" (the file's
// name), "fileSize", "index" ("sidecar" | "none"), and "frames": [{"kind", "start", "length",
// "fileOffset", and for compressed data frames "storedSize" and "chunks"}]. Only the frame
// headers (and a compressed stream's trailer) are read, never the payload.
Result<nlohmann::ordered_json> DumpDataFile(const Storage& saveset, const std::string& name);

}  // namespace backupfs
