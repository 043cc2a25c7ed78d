#!/usr/bin/python3
"""Runs virtnbdbackup 1.9.15 (the Debian package) in remote mode against the test setup.

1.9.15 gives no way to name the ssh port or key (paramiko's defaults: port 22, ~/.ssh/id_*), no
certificate directory for libnbd's TLS, and no address to connect to other than the one the
export binds. The test sshd listens on 127.0.0.2:2222 with a key of its own and the benchmark
reaches the export through a delaying proxy, so this wrapper sets those three in the libraries
virtnbdbackup calls, and changes nothing else:
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
    return _connect_uri(self, uri)


_ssh_connect = paramiko.SSHClient.connect


def ssh_connect(self, host, *args, **kwargs):
    if os.environ.get("VNB_SSH_PORT"):
        kwargs.setdefault("port", int(os.environ["VNB_SSH_PORT"]))
    if os.environ.get("VNB_SSH_KEY"):
        kwargs.setdefault("key_filename", os.environ["VNB_SSH_KEY"])
    return _ssh_connect(self, host, *args, **kwargs)


nbd.NBD.connect_uri = connect_uri
paramiko.SSHClient.connect = ssh_connect
sys.argv[0] = "/usr/bin/virtnbdbackup"
runpy.run_path("/usr/bin/virtnbdbackup", run_name="__main__")
