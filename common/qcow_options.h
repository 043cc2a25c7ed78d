// The qemu-img create options that rebuild a qcow2 image like the one backed up, from the
// `qemu-img info --output json` saved beside the backup (`<disk>.<id>.qcow.json`), as
// virtnbdrestore does: compat, cluster size, lazy refcounts, compression type, refcount width,
// extended L2 entries.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "stream/status.h"

namespace backupfs {

struct QcowCreateOptions {
  std::vector<std::string> options;  // "-o" values: "compat=1.1", "cluster_size=65536", ...
  std::vector<std::string> notes;    // what was not carried over, and why
};

// `what` names the document in errors. Not JSON, or not a JSON object, is InvalidArgument.
Result<QcowCreateOptions> ParseQcowCreateOptions(std::string_view json, const std::string& what);

}  // namespace backupfs
