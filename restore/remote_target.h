// The pieces of a restore onto another hypervisor that are not about images: how that host's
// libvirt sets up x509 for QEMU (which the restore's qemu-nbd follows), and the libvirt
// connection with --user/--password.
#pragma once

#include <string>

#include "capture/libvirt.h"
#include "common/host.h"
#include "common/remote.h"
#include "stream/status.h"

namespace backupfs {

// libvirt's x509 setup for QEMU on a host, from its qemu.conf: backup_tls_x509_cert_dir and
// backup_tls_x509_verify, else default_tls_x509_*, else /etc/pki/qemu with client
// certificates verified (libvirt's defaults).
struct HostTls {
  std::string dir = kDefaultTlsDir;
  bool verify = true;
};

// From the text of a qemu.conf.
HostTls ParseHostTls(const std::string& qemu_conf);
// From the host's /etc/libvirt/qemu.conf; libvirt's defaults when it cannot be read.
HostTls ReadHostTls(Host& host);

// Connects to libvirt at `uri` ("" = qemu:///system); with a user or password in `remote`,
// they answer libvirt's credential questions (SASL). The password is never logged nor put
// in a message.
Result<UniqueConnect> ConnectLibvirtAs(const std::string& uri, const RemoteOptions& remote);

}  // namespace backupfs
