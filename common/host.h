// The machine a domain's images, firmware files and helper processes live on: this one, or a
// hypervisor reached over ssh (libssh: commands over exec channels, files over SFTP).
//
// Capture and restore do everything that touches the hypervisor's filesystem through a Host,
// so that local and remote runs are one code path with two ways of reaching the machine.
// A Host is not thread-safe: one thread uses it at a time (callers serialize).
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "stream/status.h"

namespace backupfs {

struct CommandResult {
  int exit_code = 0;
  std::string out;  // stdout
  std::string err;  // stderr
};

// A long-running program on a host (qemu-nbd). The destructor stops it; a remote one also
// ends when the ssh connection drops (our process killed, the network cut), so that nothing
// keeps an image open on the hypervisor after we are gone.
class HostProcess {
 public:
  virtual ~HostProcess() = default;
  // nullopt while it runs; else how it ended ("exited with 1: <last stderr line>").
  virtual std::optional<std::string> Exited() = 0;
  // Asks it to end and waits: Ok when it exited with 0 (qemu-nbd: flushed and closed the
  // image), else an IOError naming `what` and its last stderr line.
  virtual Status Stop(const std::string& what) = 0;
};

class Host {
 public:
  virtual ~Host() = default;

  virtual bool remote() const = 0;
  // "this host", or "host 127.0.0.2" (as given in the URI), for messages.
  virtual const std::string& name() const = 0;
  // The address given in the URI ("" for this host): the default NBD address of a remote run.
  virtual const std::string& address() const = 0;

  // Runs argv to the end. No shell locally; remotely each word is quoted for the remote
  // shell, so nothing in argv is ever interpreted. A non-zero exit is not an error here.
  virtual Result<CommandResult> Run(const std::vector<std::string>& argv) = 0;
  // Like Run, but a start failure, signal or non-zero exit is an IOError naming the host, the
  // program and its last stderr line; returns stdout.
  Result<std::string> RunChecked(const std::vector<std::string>& argv);

  // Starts argv in the background with stderr kept for messages (see HostProcess).
  virtual Result<std::unique_ptr<HostProcess>> Spawn(const std::vector<std::string>& argv) = 0;

  virtual Result<std::string> ReadFile(const std::string& path) = 0;
  // Streams the host's file into a local file (created or truncated, mode 0600), fsynced.
  virtual Status FetchFile(const std::string& path, const std::string& local_path) = 0;
  // Streams a local file to the host as `path` (written as path + ".partial", fsynced,
  // renamed), with `mode`.
  virtual Status PutFile(const std::string& local_path, const std::string& path, mode_t mode) = 0;
  virtual Status WriteFile(const std::string& path, const std::string& contents, mode_t mode) = 0;
  // False when it does not exist; an error when it cannot be told.
  virtual Result<bool> Exists(const std::string& path) = 0;
  virtual Status MakeDirs(const std::string& path, mode_t mode) = 0;  // mkdir -p
  virtual Status Rename(const std::string& from, const std::string& to) = 0;
  virtual Status Remove(const std::string& path) = 0;  // a file or an empty directory
  // fsyncs the file or directory `path` on the host.
  virtual Status Sync(const std::string& path) = 0;
};

std::unique_ptr<Host> MakeLocalHost();

// How to reach a remote host over ssh: virtnbdbackup's --ssh-user/--ssh-port/
// --ssh-private-key, and libvirt's qemu+ssh URI parameters (keyfile, known_hosts, no_verify).
struct SshOptions {
  std::string host;         // name or address
  unsigned port = 22;       //
  std::string user;         // "" : the local user's name
  std::string private_key;  // "" : ~/.ssh/id_* (libssh's defaults, and the ssh agent)
  std::string known_hosts;  // "" : ~/.ssh/known_hosts
  // A host whose key is unknown or does not match known_hosts is refused unless false
  // (libvirt's no_verify=1).
  bool verify_host_key = true;
};

// Connects and authenticates. Errors name the host and port and say what to fix: unreachable,
// refused, host key unknown or changed (with known_hosts' path), key refused.
Result<std::unique_ptr<Host>> ConnectSsh(const SshOptions& options);

}  // namespace backupfs
