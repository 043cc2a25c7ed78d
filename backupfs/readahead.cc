#include "backupfs/readahead.h"

#include <fcntl.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "stream/file.h"

namespace backupfs {

namespace {

// mountinfo writes space, tab, newline and backslash in paths as \ooo octal escapes.
std::string Unescape(const std::string& field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      int v = 0;
      bool octal = true;
      for (size_t k = 1; k <= 3; ++k) {
        char c = field[i + k];
        octal = octal && c >= '0' && c <= '7';
        v = v * 8 + (c - '0');
      }
      if (octal) {
        out += static_cast<char>(v);
        i += 3;
        continue;
      }
    }
    out += field[i];
  }
  return out;
}

}  // namespace

Result<std::string> MountDeviceNumber(const std::string& mountpoint) {
  char real[PATH_MAX];
  if (::realpath(mountpoint.c_str(), real) == nullptr) {
    return Status::FromErrno("cannot resolve " + mountpoint, errno);
  }
  std::ifstream in("/proc/self/mountinfo");
  std::string line, found;
  while (std::getline(in, line)) {
    // id parent major:minor root mountpoint ...; the newest mount on a path comes last.
    std::istringstream fields(line);
    std::string id, parent, dev, root, point;
    fields >> id >> parent >> dev >> root >> point;
    if (Unescape(point) == real) found = dev;
  }
  if (found.empty()) return Status::NotFound(mountpoint + ": not a mount point");
  return found;
}

Status SetReadaheadKib(const std::string& device_number, unsigned kib) {
  const std::string path = "/sys/class/bdi/" + device_number + "/read_ahead_kb";
  BFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_WRONLY));
  std::string text = std::to_string(kib);
  return WriteAll(fd.get(), std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()),
                  path);
}

}  // namespace backupfs
