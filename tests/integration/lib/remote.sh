# shellcheck shell=bash
# Fixtures for remote-hypervisor tests (sourced after harness.sh): an sshd on 127.0.0.2:2222
# that reaches this machine as "another host", and x509 certificates for NBD over TLS.
#
# The sshd is shared: tests that run at the same time use one server (its keys and config stay
# in $REMOTE_STATE), each registers its pid, and the last one to leave stops it.

REMOTE_STATE="/var/lib/backupfs-test/sshd"
REMOTE_SSH_ADDRESS="127.0.0.2"
REMOTE_SSH_PORT=2222

# Runs "$@" holding $REMOTE_STATE/setup.lock, so that starts and stops do not interleave.
_remote_locked() { _remote_locked_in "$REMOTE_STATE" "$@"; }

# _remote_locked_in DIR CMD... : runs CMD holding DIR/setup.lock (not inherited by CMD's
# children, so a daemon it starts does not keep the lock).
# Its locals have odd names: CMD sees them (bash scopes dynamically) and may use its own.
_remote_locked_in() {
    local _rl_dir="$1" _rl_fd _rl_rc=0
    shift
    exec {_rl_fd}>"$_rl_dir/setup.lock"
    flock -x "$_rl_fd"
    "$@" {_rl_fd}>&- || _rl_rc=$?
    exec {_rl_fd}>&-
    return "$_rl_rc"
}

_remote_sshd_accepts() { timeout 2 bash -c "exec 3<>/dev/tcp/$REMOTE_SSH_ADDRESS/$REMOTE_SSH_PORT" 2>/dev/null; }

_remote_sshd_pid() {
    local pid
    pid="$(cat "$REMOTE_STATE/sshd.pid" 2>/dev/null)" || return 1
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && printf '%s' "$pid"
}

# Keys and config, made once and kept: a restart needs no new known_hosts.
_remote_make_sshd_files() {
    local s="$REMOTE_STATE"
    [[ -f "$s/host_key" ]] || ssh-keygen -q -t ed25519 -N '' -C backupfs-test-host -f "$s/host_key"
    [[ -f "$s/root_key" ]] || ssh-keygen -q -t ed25519 -N '' -C backupfs-test-root -f "$s/root_key"
    cp "$s/root_key.pub" "$s/authorized_keys"
    printf '[%s]:%s %s\n' "$REMOTE_SSH_ADDRESS" "$REMOTE_SSH_PORT" "$(cut -d' ' -f1,2 "$s/host_key.pub")" \
        >"$s/known_hosts"
    # ClientAlive*: a client that vanished without closing (a cut network) is dropped within
    # 6 s, and with it the processes it started.
    cat >"$s/sshd_config" <<CONF
ListenAddress $REMOTE_SSH_ADDRESS:$REMOTE_SSH_PORT
HostKey $s/host_key
PidFile $s/sshd.pid
AuthorizedKeysFile $s/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
ClientAliveInterval 2
ClientAliveCountMax 3
MaxStartups 100
MaxSessions 100
Subsystem sftp /usr/lib/openssh/sftp-server
LogLevel VERBOSE
CONF
}

# libvirt's qemu+ssh transport runs the ssh binary, which ignores the URI's known_hosts= and
# reads ~/.ssh/known_hosts: the test host key goes there too (replacing an older one).
_remote_trust_for_ssh_binary() {
    local line home_kh="$HOME/.ssh/known_hosts"
    line="$(cat "$REMOTE_STATE/known_hosts")"
    grep -qxF "$line" "$home_kh" 2>/dev/null && return 0
    [[ -d "$HOME/.ssh" ]] || mkdir -m 0700 "$HOME/.ssh"
    [[ -f "$home_kh" ]] && ssh-keygen -q -R "[$REMOTE_SSH_ADDRESS]:$REMOTE_SSH_PORT" -f "$home_kh" >/dev/null 2>&1
    printf '%s\n' "$line" >>"$home_kh"
}

_remote_start_sshd_locked() {
    mkdir -p "$REMOTE_STATE/users"
    touch "$REMOTE_STATE/users/$$"
    if ! { _remote_sshd_pid >/dev/null && _remote_sshd_accepts; }; then _remote_launch_sshd; fi
    _remote_trust_for_ssh_binary
}

_remote_launch_sshd() {
    _remote_make_sshd_files
    mkdir -p /run/sshd
    harness_log "starting sshd on $REMOTE_SSH_ADDRESS:$REMOTE_SSH_PORT"
    /usr/sbin/sshd -f "$REMOTE_STATE/sshd_config" -E "$REMOTE_STATE/sshd.log" </dev/null ||
        harness_fail "sshd does not start (log: $REMOTE_STATE/sshd.log)"
    harness_wait_for 30 "sshd on $REMOTE_SSH_ADDRESS:$REMOTE_SSH_PORT" _remote_sshd_accepts ||
        harness_fail "sshd does not accept on $REMOTE_SSH_ADDRESS:$REMOTE_SSH_PORT (log: $REMOTE_STATE/sshd.log)"
}

_remote_stop_sshd_locked() {
    local f pid
    rm -f "$REMOTE_STATE/users/$$"
    for f in "$REMOTE_STATE"/users/*; do
        [[ -e "$f" ]] || continue
        kill -0 "${f##*/}" 2>/dev/null && return 0 # another test still uses it
        rm -f "$f"
    done
    if pid="$(_remote_sshd_pid)"; then
        harness_log "stopping sshd (pid $pid)"
        kill "$pid"
    fi
}

_remote_stop_sshd() { _remote_locked _remote_stop_sshd_locked; }

# remote_start_sshd : starts (or joins) the test sshd and exports
#   REMOTE_KEY          root's private key for it
#   REMOTE_KNOWN_HOSTS  a known_hosts file with its host key
#   REMOTE_HOST_KEY_PUB its host key (public)
#   REMOTE_URI          qemu+ssh://root@127.0.0.2:2222/system?keyfile=...&known_hosts=...
#   REMOTE_LIBSSH_URI   the same over libvirt's qemu+libssh transport
# REMOTE_URI works with virsh and libvirt because the host key is also put in root's
# ~/.ssh/known_hosts (libvirt's qemu+ssh runs the ssh binary, which ignores known_hosts=);
# qemu+libssh:// honours known_hosts= itself. backupfs reads both.
remote_start_sshd() {
    harness_require ssh-keygen flock timeout
    [[ -x /usr/sbin/sshd ]] || harness_fail "sshd not found (package openssh-server not installed?)"
    mkdir -p "$REMOTE_STATE"
    chmod 0755 "$REMOTE_STATE" "${REMOTE_STATE%/*}"
    _remote_locked _remote_start_sshd_locked
    harness_on_exit _remote_stop_sshd
    export REMOTE_KEY="$REMOTE_STATE/root_key"
    export REMOTE_KNOWN_HOSTS="$REMOTE_STATE/known_hosts"
    export REMOTE_HOST_KEY_PUB="$REMOTE_STATE/host_key.pub"
    local params="keyfile=$REMOTE_KEY&known_hosts=$REMOTE_KNOWN_HOSTS"
    export REMOTE_URI="qemu+ssh://root@$REMOTE_SSH_ADDRESS:$REMOTE_SSH_PORT/system?$params"
    export REMOTE_LIBSSH_URI="qemu+libssh://root@$REMOTE_SSH_ADDRESS:$REMOTE_SSH_PORT/system?$params"
}

REMOTE_PKI="/var/lib/backupfs-test/pki"

# _remote_cert TEMPLATE_TEXT OUT_PREFIX CA_DIR : a key and a certificate signed by CA_DIR's CA
# (self-signed when CA_DIR is "").
_remote_cert() {
    local template="$1" out="$2" ca="$3"
    printf '%s\n' "$template" >"$out.info"
    certtool --generate-privkey --key-type=ecdsa --outfile "$out-key.pem" >/dev/null 2>&1 ||
        harness_fail "certtool cannot make a key $out-key.pem"
    if [[ -z "$ca" ]]; then
        certtool --generate-self-signed --load-privkey "$out-key.pem" --template "$out.info" \
            --outfile "$out-cert.pem" >/dev/null 2>&1
    else
        certtool --generate-certificate --load-privkey "$out-key.pem" --load-ca-certificate \
            "$ca/ca-cert.pem" --load-ca-privkey "$ca/ca-key.pem" --template "$out.info" \
            --outfile "$out-cert.pem" >/dev/null 2>&1
    fi || harness_fail "certtool cannot make the certificate $out-cert.pem"
    rm -f "$out.info"
}

_remote_make_ca() {
    mkdir -p "$1"
    _remote_cert "cn = $2
ca
cert_signing_key
expiration_days = 3650" "$1/ca" ""
}

# _remote_make_client CA_DIR OUT_DIR : ca-cert.pem, client-cert.pem, client-key.pem (libnbd's
# and QEMU's layout) of a client of CA_DIR's CA.
_remote_make_client() {
    mkdir -p "$2"
    _remote_cert "cn = backupfs-test-client
tls_www_client
signing_key
encryption_key
expiration_days = 3650" "$2/client" "$1"
    cp "$1/ca-cert.pem" "$2/ca-cert.pem"
}

# remote_make_pki DIR : x509 files for NBD over TLS, made with certtool:
#   DIR/ca/      the CA (ca-cert.pem, ca-key.pem)
#   DIR/server/  ca-cert.pem, server-cert.pem, server-key.pem for QEMU/qemu-nbd, valid for
#                127.0.0.2 and 127.0.0.3 (a test proxy) and localhost
#   DIR/client/  ca-cert.pem, client-cert.pem, client-key.pem
#   DIR/wrongca/ the same for a client of another, unrelated CA (its ca-cert.pem does not
#                verify the server)
# Readable by libvirt-qemu (QEMU loads the server files): test keys, nothing secret.
remote_make_pki() {
    local dir="$1"
    harness_require certtool
    rm -rf "$dir/ca" "$dir/server" "$dir/client" "$dir/wrongca" "$dir/wrongca-ca"
    mkdir -p "$dir"
    _remote_make_ca "$dir/ca" "backupfs test CA"
    mkdir -p "$dir/server"
    _remote_cert "cn = 127.0.0.2
ip_address = 127.0.0.2
ip_address = 127.0.0.3
dns_name = localhost
tls_www_server
signing_key
encryption_key
expiration_days = 3650" "$dir/server/server" "$dir/ca"
    cp "$dir/ca/ca-cert.pem" "$dir/server/ca-cert.pem"
    _remote_make_client "$dir/ca" "$dir/client"
    _remote_make_ca "$dir/wrongca-ca" "backupfs unrelated test CA"
    _remote_make_client "$dir/wrongca-ca" "$dir/wrongca"
    chmod -R a+rX "$dir"
}

_remote_pki_complete() {
    local f
    for f in ca/ca-cert.pem server/server-cert.pem server/server-key.pem server/ca-cert.pem \
        client/client-cert.pem client/client-key.pem wrongca/client-cert.pem; do
        [[ -s "$1/$f" ]] || return 1
    done
}

# remote_pki : exports REMOTE_PKI, made once in a fixed place and kept (a libvirtd restart
# and every running test depend on the files staying the same).
_remote_pki_locked() { _remote_pki_complete "$REMOTE_PKI" || remote_make_pki "$REMOTE_PKI"; }

remote_pki() {
    mkdir -p "${REMOTE_PKI%/*}"
    _remote_locked_in "${REMOTE_PKI%/*}" _remote_pki_locked
    export REMOTE_PKI
}

_remote_set_qemu_conf() {
    local conf=/etc/libvirt/qemu.conf dir="$1" verify="$2" before
    before="$(cat "$conf")"
    sed -i -e '/^[[:space:]]*backup_tls_x509_cert_dir[[:space:]]*=/d' \
        -e '/^[[:space:]]*backup_tls_x509_verify[[:space:]]*=/d' "$conf"
    printf 'backup_tls_x509_cert_dir = "%s"\nbackup_tls_x509_verify = %s\n' "$dir" "$verify" >>"$conf"
    [[ "$(cat "$conf")" != "$before" ]]
}

_remote_restart_libvirtd() {
    local pid
    pid="$(cat /run/libvirtd.pid 2>/dev/null)" || pid=""
    harness_log "restarting libvirtd (pid ${pid:-none}) for qemu.conf's backup TLS settings"
    if [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; then
        harness_wait_for 60 "libvirtd $pid to exit" bash -c "! kill -0 $pid" ||
            harness_fail "libvirtd (pid $pid) does not exit"
    fi
    libvirtd -d </dev/null >>"$HARNESS_ROOT/libvirtd-start.log" 2>&1 ||
        harness_fail "libvirtd -d fails (log: $HARNESS_ROOT/libvirtd-start.log)"
    harness_wait_for 120 "libvirtd to answer" _harness_libvirt_answers ||
        harness_fail "libvirtd does not answer after a restart (does it accept the backup_tls_x509_* lines at the end of /etc/libvirt/qemu.conf?)"
}

_remote_tls_locked() {
    if _remote_set_qemu_conf "$1" "$2"; then _remote_restart_libvirtd; fi
}

# remote_libvirt_backup_tls [DIR] [VERIFY] : libvirt's QEMU serves backup NBD exports over TLS
# with DIR/server (default: remote_pki's), asking clients for a certificate unless VERIFY
# is 0. Restarts libvirtd only when qemu.conf changes (running domains survive it).
remote_libvirt_backup_tls() {
    local dir="${1:-}" verify="${2:-1}"
    if [[ -z "$dir" ]]; then
        remote_pki
        dir="$REMOTE_PKI"
    fi
    _remote_pki_complete "$dir" || harness_fail "$dir lacks the x509 files of remote_make_pki"
    chmod -R a+rX "$dir"
    _remote_locked_in "${REMOTE_PKI%/*}" _remote_tls_locked "$dir/server" "$verify"
}
