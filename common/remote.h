// The options of a run against another hypervisor (virtnbdbackup's and virtnbdrestore's -U,
// --user, --password, --ssh-user, --ssh-port, --ssh-private-key, -I, -P, --tls, --tls-cert,
// plus --nbd-connect), and what a libvirt URI says about the host.
#pragma once

#include <string>

#include "common/host.h"
#include "common/nbd_endpoint.h"
#include "stream/status.h"

namespace backupfs {

inline constexpr unsigned kDefaultNbdPort = 10809;
inline constexpr char kDefaultTlsDir[] = "/etc/pki/qemu";  // libvirt's and virtnbdbackup's

struct RemoteOptions {
  std::string uri;  // the libvirt URI, as given (qemu:///system when local)
  // Empty host: the domain is on this machine (qemu:///system, qemu:///session, ...).
  SshOptions ssh;
  std::string libvirt_user;      // --user: libvirt's SASL user
  std::string libvirt_password;  // --password: never logged, never in an error message
  // Where the NBD export listens on the hypervisor (-I; default: the URI's host) and its port
  // (-P). A run that finds the port in use fails and names it.
  std::string nbd_ip;
  unsigned nbd_port = kDefaultNbdPort;
  // --nbd-connect HOST[:PORT]: the client connects here instead of nbd_ip:nbd_port (a proxy,
  // a port forward, NAT); "" to connect where the export listens.
  std::string nbd_connect;
  bool tls = false;                      // --tls: NBD over TLS (libvirt's/QEMU's x509 setup)
  std::string tls_dir = kDefaultTlsDir;  // --tls-cert: ca-cert.pem, client-cert.pem, client-key.pem

  bool remote() const { return !ssh.host.empty(); }
  // The URI libvirt is given: `uri` with --ssh-user, --ssh-port and --ssh-private-key added
  // where it names none (user@, :port, keyfile=), so that libvirt's own ssh connection goes
  // where ours does. Other transports' URIs are returned as they are.
  std::string LibvirtUri() const;
  // The endpoint a client connects to for an export on nbd_ip:port (nbd_connect when set).
  NbdEndpoint ClientEndpoint(unsigned port) const;
};

// The remote options as a command line gives them (virtnbdbackup's and virtnbdrestore's names,
// and --nbd-connect); empty or 0 when not given. Both tools parse into this.
struct RemoteArgs {
  std::string uri{}, user{}, password{}, ssh_user{}, ssh_private_key{}, nbd_ip{}, nbd_connect{},
      tls_cert{};
  unsigned ssh_port = 0;
  unsigned nbd_port = 0;
  bool tls = false;
};

// The first option in `a` that only a run against another host uses ("-U URI names a remote
// host", "--ssh-user", ...), for a usage message; "" when none is given.
std::string FirstRemoteOnlyOption(const RemoteArgs& a);

// RemoteOptions from the command line; for a remote -U completed from the URI (RemoteFromUri).
// An InvalidArgument for a --nbd-connect that is not HOST[:PORT] or [IPV6]:PORT, or a URI
// that does not parse. The password is never part of a message.
Result<RemoteOptions> RemoteFromArgs(const RemoteArgs& a);

// Options naming only a libvirt URI (a local run, or one that needs no ssh).
inline RemoteOptions LibvirtOnly(const std::string& uri) {
  RemoteOptions r;
  r.uri = uri;
  return r;
}

// Fills ssh.host, ssh.port, ssh.user, ssh.private_key (keyfile=), ssh.known_hosts
// (known_hosts=) and ssh.verify_host_key (no_verify=1) from the URI (libxml2's URI parser);
// options given on the command line (non-empty in `base`, or a port other than 22) win.
// An InvalidArgument naming the URI when it cannot be parsed.
Result<RemoteOptions> RemoteFromUri(const std::string& uri, RemoteOptions base);

// The host of the run: this machine, or the URI's host over ssh.
Result<std::unique_ptr<Host>> ConnectHost(const RemoteOptions& remote);

}  // namespace backupfs
