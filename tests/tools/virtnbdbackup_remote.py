#!/usr/bin/python3
"""Runs virtnbdbackup 1.9.15 (the Debian package) in remote mode against the test setup.

The "remote" host of the tests is this machine reached through sshd on 127.0.0.2:2222, and
1.9.15 tells a remote host from the local one by comparing libvirt's hostname with its own
(then uses a unix socket, not TCP), gives no way to name the ssh port or key (paramiko's
defaults: port 22, ~/.ssh/id_*), no certificate directory for libnbd's TLS, and no address to
connect to other than the one the export binds. This wrapper sets those in the libraries
virtnbdbackup calls, and changes nothing else:
  (always)                    virtnbdbackup's own host name is "backup-host", so libvirt's
                              host counts as remote
  VNB_SSH_HOST                where paramiko connects instead of libvirt's host name
  VNB_SSH_PORT, VNB_SSH_KEY   paramiko's port and key
  VNB_CERTS                   tls-certificates= added to nbds:// URIs
  VNB_EXPORT, VNB_CONNECT     connect to VNB_CONNECT (host:port) where the URI names
                              VNB_EXPORT (optional)
Arguments are virtnbdbackup's. Run with the system python (/usr/bin/python3), whose modules
virtnbdbackup uses.
"""
import os
import runpy
import sys

import nbd
import paramiko

_connect_uri = nbd.NBD.connect_uri


def connect_uri(self, uri):
    export, connect = os.environ.get("VNB_EXPORT"), os.environ.get("VNB_CONNECT")
    if export and connect:
        uri = uri.replace(export, connect, 1)
    if uri.startswith("nbds://") and os.environ.get("VNB_CERTS"):
        uri += ("&" if "?" in uri else "?") + "tls-certificates=" + os.environ["VNB_CERTS"]
        self.set_uri_allow_local_file(True)  # libnbd refuses file names in URIs otherwise
    return _connect_uri(self, uri)


_ssh_connect = paramiko.SSHClient.connect


def ssh_connect(self, host, *args, **kwargs):
    host = os.environ.get("VNB_SSH_HOST", host)
    if os.environ.get("VNB_SSH_PORT"):
        kwargs.setdefault("port", int(os.environ["VNB_SSH_PORT"]))
    if os.environ.get("VNB_SSH_KEY"):
        kwargs.setdefault("key_filename", os.environ["VNB_SSH_KEY"])
    return _ssh_connect(self, host, *args, **kwargs)


nbd.NBD.connect_uri = connect_uri
paramiko.SSHClient.connect = ssh_connect
import libvirtnbdbackup.virt.client  # noqa: E402,F401 (after the patches above)

# The package's attribute `client` is the class; the module is in sys.modules.
sys.modules["libvirtnbdbackup.virt.client"].gethostname = lambda: "backup-host"
sys.argv[0] = "/usr/bin/virtnbdbackup"
runpy.run_path("/usr/bin/virtnbdbackup", run_name="__main__")
