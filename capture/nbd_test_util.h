// Child processes for the NBD tests (qemu-nbd, qemu-img, certtool, the delay proxy).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace backupfs::testing {

// True when `program` is an executable on PATH.
bool OnPath(const std::string& program);

// Starts argv[0] (searched on PATH) with its stdout sent to /dev/null; -1 on failure.
pid_t Spawn(const std::vector<std::string>& args);

// Runs a command to completion; true when it exits with status 0.
bool RunCommand(const std::vector<std::string>& args);

// Stops a child we started (SIGTERM) and reaps it; nothing when pid <= 0.
void StopChild(pid_t pid);

}  // namespace backupfs::testing
