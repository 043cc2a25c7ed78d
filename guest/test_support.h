// Helpers shared by the guest unit tests: running the real image tools (mkfs.ext4, debugfs,
// sfdisk, mkntfs, ntfs-3g, mount) from an argv, never through a shell. Scratch directories are
// stream/test_util.h's ScratchDir (a fresh directory under $TMPDIR, removed with its contents).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "stream/test_util.h"

namespace backupfs::guest_test {

using backupfs::testing::ScratchDir;

// Runs argv[0] (found on PATH) with stdin from `stdin_path` (/dev/null when empty) and stdout
// and stderr on /dev/null (mkntfs, debugfs and ntfs-3g chatter on stderr even when they work;
// callers name the tool in their assertion). Returns its exit status: 127 when it could not be
// started, -1 when it could not be forked or did not exit.
int RunTool(const std::vector<std::string>& argv, const std::string& stdin_path = "");

// As RunTool, but returns what the tool wrote on stdout. A tool that exits with a status other
// than 0 adds a (non-fatal) test failure naming it and gives "".
std::string RunToolOutput(const std::vector<std::string>& argv, const std::string& stdin_path = "");

// Starts argv[0] with stdin, stdout and stderr on /dev/null and does not wait: for a tool that
// stays in the foreground while the test works beside it (ntfs-3g -o no_detach). Returns its
// pid, to be reaped with WaitTool, or -1 when it could not be forked.
pid_t StartDetachedTool(const std::vector<std::string>& argv);

// Waits for a process from StartDetachedTool; its exit status, or -1 as RunTool.
int WaitTool(pid_t pid);

}  // namespace backupfs::guest_test
