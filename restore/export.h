// NBD export of a restore point's disk, what virtnbdmap is for, without root, the nbd kernel
// module or an uncompressed saveset: the saveset is mounted by the backupfs daemon in a
// private directory and nbdkit serves the point's raw image from the mount, on a unix socket
// or a TCP address; read-only, or writable through nbdkit's cow filter (writes go to an
// overlay that is discarded when the export ends). The saveset is never written.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "common/run_log.h"
#include "storage/open_storage.h"
#include "stream/status.h"
#include "stream/storage.h"

namespace backupfs {

struct ExportOptions {
  std::string input;                 // -i
  std::shared_ptr<Storage> saveset;  // -i opened (nullptr: the local directory `input`)
  StoreOptions store;                // how -i was opened, when it names a store
  std::string until;                 // -u ("" = the newest point)
  std::string disk;                  // -d ("" = the point's only disk)
  std::string socket;                // --socket PATH, or
  std::string tcp;                   // --tcp HOST:PORT
  bool writable = false;
};

// Serves until `stop` is set (a signal) or nbdkit ends; `ready` gets the export's NBD URI
// once clients can connect. Everything it made (mount, overlay, socket) is removed on return.
Status RunExport(const ExportOptions& options, RunLog& log, std::atomic<bool>& stop,
                 const std::function<void(const std::string& uri)>& ready);

}  // namespace backupfs
