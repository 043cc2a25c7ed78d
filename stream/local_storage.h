// A saveset in a local directory: files are plain files, a new file is written as
// `<name>.partial`, fsynced and renamed into place, and the writer lock is an flock on the
// directory (stream/dir_lock.h).
#pragma once

#include <memory>
#include <string>

#include "stream/storage.h"

namespace backupfs {

// `dir` need not exist yet (capture makes it); reads of a missing one fail naming it.
std::unique_ptr<Storage> OpenLocalStorage(const std::string& dir);

// A local file opened for reading (also used where a tool is handed a path).
Result<std::unique_ptr<StoredFile>> OpenLocalFile(const std::string& path);

}  // namespace backupfs
