#include "stream/dir_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace backupfs {
namespace {

std::string ProcessName(const std::string& pid) {
  std::ifstream comm("/proc/" + pid + "/comm");
  std::string name;
  std::getline(comm, name);
  return name;
}

// The pids holding a flock on `path`, from /proc/locks lines such as
// "1: FLOCK  ADVISORY  WRITE 12345 08:01:1234567 0 EOF".
std::vector<std::string> FlockHolders(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return {};
  char dev_ino[64];
  std::snprintf(dev_ino, sizeof dev_ino, "%02x:%02x:%llu", major(st.st_dev), minor(st.st_dev),
                static_cast<unsigned long long>(st.st_ino));
  std::ifstream locks("/proc/locks");
  std::string line;
  std::vector<std::string> pids;
  while (std::getline(locks, line)) {
    std::istringstream f(line);
    std::string n, kind, mode, rw, pid, where;
    if (!(f >> n >> kind >> mode >> rw >> pid >> where) || kind != "FLOCK" || where != dev_ino) {
      continue;
    }
    pids.push_back(pid);
  }
  return pids;
}

}  // namespace

Result<SavesetLock> LockSaveset(const std::string& dir) {
  BFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(dir, O_RDONLY | O_DIRECTORY));
  if (flock(fd.get(), LOCK_EX | LOCK_NB) == 0) return SavesetLock(std::move(fd));
  if (errno == EWOULDBLOCK) {
    return Status::FailedPrecondition(dir + " is in use by another run (" + LockHolders(dir) +
                                      "): try again later");
  }
  return Status::FromErrno("cannot lock " + dir, errno);
}

std::string LockHolders(const std::string& path) {
  std::string holders;
  for (const std::string& pid : FlockHolders(path)) {
    holders += (holders.empty() ? "" : ", ") + ("pid " + pid + " (" + ProcessName(pid) + ")");
  }
  return holders.empty() ? "unknown process" : holders;
}

bool SavesetBusy(const std::string& path) { return !FlockHolders(path).empty(); }

}  // namespace backupfs
