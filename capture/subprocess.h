// Runs a program with an argument vector (never a shell) and collects its output.
#pragma once

#include <string>
#include <vector>

#include "stream/status.h"

namespace backupfs {

// Runs argv[0] (looked up in PATH) with `argv`, stdin from /dev/null, and returns what it
// wrote to stdout. A failure to start, a signal or a non-zero exit is an IOError naming the
// program and carrying the last line of its stderr. Blocks until the program ends.
Result<std::string> RunCapture(const std::vector<std::string>& argv);

}  // namespace backupfs
