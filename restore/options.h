// What `backupfs-restore -a restore` is asked to do: virtnbdrestore's options, and ours.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/remote.h"
#include "stream/storage.h"

namespace backupfs {

enum class OutputFormat {
  kAuto,  // each disk's own format, as its backup recorded it (qcow2 for qcow2 disks)
  kQcow2,
  kRaw,  // a sparse raw file
};

struct RestoreOptions {
  std::string input;  // -i: the saveset, as the user named it
  // -i opened by the caller (backupfs-restore opens it with OpenStorage: a directory or an
  // s3:// prefix); nullptr: the local directory `input`.
  std::shared_ptr<Storage> saveset;
  std::string output;                        // -o: the directory the images go to
  std::string until;                         // -u: restore point; "" = the newest
  std::vector<std::string> sequence;         // -s: data file names in DIR, oldest first
  std::string disk;                          // -d: only this disk ("" = all)
  unsigned workers = 0;                      // -w: disks restored at once (0 = up to 2)
  bool progress = true;                      // not -n
  std::string socket_file;                   // -f: qemu-nbd's socket ("" = a private directory)
  bool raw = false;                          // -r: copy raw-image data files as they are
  bool adjust_config = false;                // -c
  bool define = false;                       // -D (implies -c)
  std::string config_file = "vmconfig.xml";  // -C
  std::string name;                          // -N ("" = restore_<name>)
  bool preallocate = false;                  // -A
  bool compress = false;                     // --compress
  bool qemu_writer = false;                  // --qemu-writer: qcow2 through qemu-nbd
  OutputFormat format = OutputFormat::kAuto;
  std::map<std::string, std::string> devices;  // --device DISK=BLOCKDEV
  bool force = false;                          // replace existing files
  std::string uri;                             // -U: libvirt to define in ("" = qemu:///system)
  // -U naming another host, and the options of a remote run (remote.uri == uri): the output
  // directory is on that host, the images are written there through qemu-nbd over TCP/TLS.
  RemoteOptions remote;
};

}  // namespace backupfs
