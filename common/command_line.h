// Small pieces of argument handling that backupfs-capture and backupfs-restore share.
#pragma once

#include <string>
#include <vector>

namespace backupfs {

// "vda,vdb" -> {"vda", "vdb"}; empty items dropped.
inline std::vector<std::string> SplitList(const std::string& list) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string::npos) comma = list.size();
    if (comma > start) out.push_back(list.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

// Whether a libvirt URI names another host (qemu+ssh://, qemu+tcp://host/..., ...), as
// opposed to the local qemu:///system or qemu:///session.
inline bool IsRemoteUri(const std::string& uri) {
  const bool has_host =
      uri.find("://") != std::string::npos && uri.find(":///") == std::string::npos;
  return has_host || uri.find("+ssh") != std::string::npos ||
         uri.find("+tcp") != std::string::npos || uri.find("+tls") != std::string::npos;
}

}  // namespace backupfs
