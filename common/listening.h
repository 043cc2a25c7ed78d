// Whether a server accepts connections yet: how the servers we start (qemu-nbd, nbdkit) are
// waited for, since neither tells its parent when it listens.
#pragma once

#include <string>

namespace backupfs {

// True once something accepts connections on the unix socket `path`.
bool AcceptsUnix(const std::string& path);
// True once something accepts connections on host:port (any address host resolves to).
bool AcceptsTcp(const std::string& host, const std::string& port);

}  // namespace backupfs
