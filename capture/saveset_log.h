// The run's log file in the saveset, `backup.<level>.<date>.log`, as virtnbdbackup names it.
//
// In a local directory the log writes the file in place, line by line, so that a run killed
// mid-way still leaves its lines. A store cannot append to an object: there the log writes a
// local temporary file, and Upload() stores it under its name once the caller has logged its
// last line (the run's error too), on failure as on success.
//
// Not thread-safe: the caller opens and uploads from one thread (the RunLog it feeds is
// thread-safe).
#pragma once

#include <string>

#include "common/run_log.h"
#include "stream/status.h"
#include "stream/storage.h"

namespace backupfs {

class SavesetLog {
 public:
  explicit SavesetLog(RunLog& log) : log_(log) {}
  // Uploads when Upload() was not called (a failure then goes unreported, and the temporary
  // file stays), and removes the temporary file.
  ~SavesetLog();
  SavesetLog(const SavesetLog&) = delete;
  SavesetLog& operator=(const SavesetLog&) = delete;

  // Makes `<base>.log` in `saveset` the log's file, or `<base>.2.log`, `<base>.3.log`, ...
  // when that is taken (runs within one second). `saveset` must outlive this.
  Status Open(Storage& saveset, const std::string& base);
  // The file's name in the saveset; "" before Open().
  const std::string& name() const { return name_; }

  // A store: stores the temporary file (every line logged so far) under name() and removes it;
  // when that fails, the temporary file stays and the error names it. Ok at once for a local
  // directory, or when there is nothing to upload.
  Status Upload();

 private:
  Status OpenTemporary(const std::string& name);
  Status Store();
  void RemoveTemporary();

  RunLog& log_;
  Storage* saveset_ = nullptr;
  std::string name_;
  std::string temp_dir_;  // a store: the directory of the temporary file ("" once removed)
  std::string temp_file_;
  bool tried_ = false;  // Upload() was called: the destructor does not try again
};

}  // namespace backupfs
