// Runs a program with an argument vector (never a shell) and collects its output.
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "stream/status.h"

namespace backupfs {

// Runs argv[0] (looked up in PATH) with `argv`, stdin from /dev/null, and returns what it
// wrote to stdout. A failure to start, a signal or a non-zero exit is an IOError naming the
// program and carrying the last line of its stderr. Blocks until the program ends.
Result<std::string> RunCapture(const std::vector<std::string>& argv);

// Starts a daemon: argv in a new session, not our child (reparented to init), so that it
// outlives us; stdout and stderr appended to `log_path`. Returns its pid.
Result<pid_t> SpawnDetached(const std::vector<std::string>& argv, const std::string& log_path);

// Whether the process `pid` still runs (a zombie does not).
bool ProcessRuns(pid_t pid);

// The last line of the file at `path` ("" when it cannot be read).
std::string LastLineOfFile(const std::string& path);

// A program running in the background (argv, never a shell), stdin and stdout on /dev/null,
// stderr into `stderr_path` so that its complaints can be quoted. The destructor ends it
// (SIGTERM, then SIGKILL after 5 s) and reaps it.
class ChildProcess {
 public:
  // `die_with_thread`: the child gets SIGTERM when the calling thread ends, so that it does
  // not outlive an owner killed with SIGKILL; only for owners that stop it before their
  // thread ends.
  static Result<std::unique_ptr<ChildProcess>> Start(const std::vector<std::string>& argv,
                                                     const std::string& stderr_path,
                                                     bool die_with_thread = false);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  // nullopt while it runs; else "exited with N" or "was killed by signal N" (reaped).
  std::optional<std::string> Exited();
  // Asks it to end (SIGTERM) and waits up to 30 s: Ok when it exited with 0, else an IOError
  // naming `what`, how it ended and its last stderr line (killed after the 30 s).
  Status Stop(const std::string& what);
  // The last line the program wrote to stderr ("" when none).
  std::string LastStderrLine() const;

 private:
  ChildProcess(pid_t pid, std::string stderr_path)
      : pid_(pid), stderr_path_(std::move(stderr_path)) {}
  pid_t pid_;
  bool reaped_ = false;
  std::string stderr_path_;
};

}  // namespace backupfs
