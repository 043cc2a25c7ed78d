// How a hypervisor's libvirt sets up x509 for QEMU, read from its qemu.conf: the qemu-nbd
// servers we start there (a restore's, an offline capture's) serve TLS the same way.
#pragma once

#include <string>

#include "common/host.h"
#include "common/remote.h"

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

}  // namespace backupfs
