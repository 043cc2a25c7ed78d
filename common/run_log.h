// The log of one backupfs-capture or backupfs-restore run: stderr, the run's log file and
// optionally syslog.
//
// Lines carry a time stamp and a level, as virtnbdbackup's do, so that cron mail and the log
// file read alike. Info and warnings go to stderr; debug lines only with verbose. The log file
// (`<output>/backup.<level>.<timestamp>.log`, opened by the run once the directory is locked)
// receives every line, debug included, so a failed cron run can be diagnosed afterwards.
// Warnings are counted for --strict. Thread-safe: disks are backed up in parallel.
#pragma once

#include <cstdio>
#include <mutex>
#include <string>

#include "stream/file.h"
#include "stream/status.h"

namespace backupfs {

class RunLog {
 public:
  // `to_stderr`: print info and warning lines there (debug too with `verbose`).
  // `ident`: the syslog identity, a string that lives as long as the program.
  // `line_prefix`: put before each line on stderr and in syslog, not in the file (a fleet's
  // "[<domain>] ", so that the lines of domains backed up at once can be told apart).
  RunLog(bool verbose, bool syslog, bool to_stderr = true, const char* ident = "backupfs-capture",
         std::string line_prefix = "");
  ~RunLog();
  RunLog(const RunLog&) = delete;
  RunLog& operator=(const RunLog&) = delete;

  // Starts copying every line into `path` (created, mode 0600: it names disks and paths). A
  // file that exists already is FailedPrecondition (every capture run gets a file of its
  // own), unless `append` (a log file named by the user, as virtnbdrestore's -L).
  // The lines logged before are written first, so the file tells the whole run.
  Status OpenFile(const std::string& path, bool append = false);
  const std::string& file_path() const { return file_path_; }

  void Debug(const std::string& line) { Emit(Level::kDebug, line); }
  void Info(const std::string& line) { Emit(Level::kInfo, line); }
  void Warn(const std::string& line) { Emit(Level::kWarning, line); }
  void Error(const std::string& line) { Emit(Level::kError, line); }

  unsigned warnings() const;
  // While a progress bar is drawn on stderr, each line first clears it (the bar redraws
  // below the line).
  void SetBarActive(bool active);
  // Whether stderr shows info lines (a progress bar must then start on a line of its own).
  bool verbose() const { return verbose_; }

 private:
  enum class Level { kDebug, kInfo, kWarning, kError };
  void Emit(Level level, const std::string& line);

  const bool verbose_;
  const bool syslog_;
  const bool to_stderr_;
  const char* const ident_;
  const std::string line_prefix_;
  mutable std::mutex mu_;
  UniqueFd file_;            // protected by mu_
  std::string file_path_;    // protected by mu_
  std::string early_;        // protected by mu_: lines logged before OpenFile
  unsigned warnings_ = 0;    // protected by mu_
  bool bar_active_ = false;  // protected by mu_
};

}  // namespace backupfs
