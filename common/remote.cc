#include "common/remote.h"

#include <optional>

#include "common/command_line.h"

#include <libxml/uri.h>

#include <charconv>
#include <memory>
#include <string_view>

namespace backupfs {

namespace {

struct UriFree {
  void operator()(xmlURIPtr u) const { xmlFreeURI(u); }
};

std::string Unescape(std::string_view s) {
  char* raw = xmlURIUnescapeString(s.data(), static_cast<int>(s.size()), nullptr);
  if (raw == nullptr) return std::string(s);
  std::string out = raw;
  xmlFree(raw);
  return out;
}

// libvirt's transports that reach the host over ssh ("qemu+ssh", "qemu+libssh", ...).
bool SshTransport(const std::string& scheme) {
  const size_t plus = scheme.find('+');
  if (plus == std::string::npos) return false;
  const std::string transport = scheme.substr(plus + 1);
  return transport == "ssh" || transport == "libssh" || transport == "libssh2";
}

// One key=value of the URI's query, as libvirt reads them.
Status ApplyParameter(const std::string& uri, const std::string& key, const std::string& value,
                      SshOptions& from_uri) {
  if (key == "keyfile") {
    from_uri.private_key = value;
  } else if (key == "known_hosts") {
    from_uri.known_hosts = value;
  } else if (key == "no_verify") {
    if (value != "0" && value != "1") {
      return Status::InvalidArgument("-U " + uri + ": no_verify must be 0 or 1, not '" + value +
                                     "'");
    }
    from_uri.verify_host_key = value == "0";
  }
  // Others (socket=, mode=, command=, ...) are libvirt's own.
  return Status::Ok();
}

Status ApplyQuery(const std::string& uri, std::string_view query, SshOptions& from_uri) {
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    const std::string key = Unescape(item.substr(0, eq));
    const std::string value =
        eq == std::string_view::npos ? std::string() : Unescape(item.substr(eq + 1));
    BFS_RETURN_IF_ERROR(ApplyParameter(uri, key, value, from_uri));
  }
  return Status::Ok();
}

// "host", "host:port", "[v6]:port" -> host and port (`port` kept when none is given).
void SplitHostPort(const std::string& text, std::string& host, unsigned& port) {
  std::string port_text;
  if (!text.empty() && text[0] == '[') {
    const size_t close = text.find(']');
    host = text.substr(1, close == std::string::npos ? std::string::npos : close - 1);
    if (close != std::string::npos && close + 1 < text.size() && text[close + 1] == ':') {
      port_text = text.substr(close + 2);
    }
  } else if (const size_t colon = text.rfind(':');
             colon != std::string::npos && text.find(':') == colon) {
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
  } else {
    host = text;  // a name, or a bare IPv6 address
  }
  unsigned parsed = 0;
  const char* end = port_text.data() + port_text.size();
  auto [ptr, ec] = std::from_chars(port_text.data(), end, parsed);
  // A malformed port is the option parser's to refuse; here it keeps the default.
  if (!port_text.empty() && ec == std::errc() && ptr == end) port = parsed;
}

// --nbd-connect HOST[:PORT] or [IPV6]:PORT: a message saying what is wrong, if anything.
std::optional<std::string> NbdConnectProblem(const std::string& value) {
  const std::string what = "--nbd-connect " + value + ": ";
  std::string port;
  if (value.starts_with('[')) {
    const size_t close = value.find(']');
    if (close == std::string::npos || close == 1) return what + "want [IPV6]:PORT";
    if (close + 1 < value.size()) {
      if (value[close + 1] != ':') return what + "want [IPV6]:PORT";
      port = value.substr(close + 2);
    }
  } else {
    const size_t colon = value.find(':');
    if (colon == 0 || value.empty()) return what + "want HOST[:PORT]";
    if (colon != std::string::npos) port = value.substr(colon + 1);
    if (port.find(':') != std::string::npos) return what + "an IPv6 address goes in [ ]";
  }
  if (value.ends_with(':')) return what + "the port is missing after ':'";
  if (!port.empty()) {
    const bool digits = port.find_first_not_of("0123456789") == std::string::npos;
    if (!digits || port.size() > 5 || std::stoul(port) == 0 || std::stoul(port) > 65535) {
      return what + "the port must be a number from 1 to 65535";
    }
  }
  return std::nullopt;
}

}  // namespace

std::string FirstRemoteOnlyOption(const RemoteArgs& a) {
  if (IsRemoteUri(a.uri)) return "-U " + a.uri + " names a remote host";
  if (!a.ssh_user.empty()) return "--ssh-user";
  if (a.ssh_port != 0) return "--ssh-port";
  if (!a.ssh_private_key.empty()) return "--ssh-private-key";
  if (a.nbd_port != 0) return "-P/--nbd-port";
  if (!a.nbd_ip.empty()) return "-I/--nbd-ip";
  if (!a.nbd_connect.empty()) return "--nbd-connect";
  if (a.tls || !a.tls_cert.empty()) return "--tls";
  return "";
}

Result<RemoteOptions> RemoteFromArgs(const RemoteArgs& a) {
  RemoteOptions r;
  r.uri = a.uri;
  r.libvirt_user = a.user;
  r.libvirt_password = a.password;
  r.ssh.user = a.ssh_user;
  if (a.ssh_port != 0) r.ssh.port = a.ssh_port;
  r.ssh.private_key = a.ssh_private_key;
  r.nbd_ip = a.nbd_ip;
  if (a.nbd_port != 0) r.nbd_port = a.nbd_port;
  if (!a.nbd_connect.empty()) {
    if (auto problem = NbdConnectProblem(a.nbd_connect)) return Status::InvalidArgument(*problem);
    r.nbd_connect = a.nbd_connect;
  }
  r.tls = a.tls;
  if (!a.tls_cert.empty()) r.tls_dir = a.tls_cert;
  if (!IsRemoteUri(a.uri)) return r;
  return RemoteFromUri(a.uri, r);
}

NbdEndpoint RemoteOptions::ClientEndpoint(unsigned port) const {
  NbdEndpoint e;
  e.port = port;
  if (!nbd_connect.empty()) {
    SplitHostPort(nbd_connect, e.host, e.port);
  } else {
    e.host = nbd_ip.empty() ? ssh.host : nbd_ip;
  }
  e.tls = tls;
  e.tls_dir = tls_dir;
  return e;
}

Result<RemoteOptions> RemoteFromUri(const std::string& uri, RemoteOptions base) {
  std::unique_ptr<xmlURI, UriFree> parsed(xmlParseURI(uri.c_str()));
  if (parsed == nullptr || parsed->scheme == nullptr) {
    return Status::InvalidArgument("-U " + uri +
                                   " is not a libvirt URI (qemu:///system, "
                                   "qemu+ssh://user@host/system?keyfile=KEY, ...)");
  }
  base.uri = uri;
  const std::string scheme = parsed->scheme;
  const std::string server = parsed->server != nullptr ? parsed->server : "";
  if (server.empty()) return base;  // this machine's libvirtd
  SshOptions from_uri;
  from_uri.host = server;
  if (SshTransport(scheme)) {
    // qemu+tcp:// and qemu+tls:// name libvirtd's own port and user, not ssh's.
    if (parsed->port > 0) from_uri.port = static_cast<unsigned>(parsed->port);
    if (parsed->user != nullptr) from_uri.user = Unescape(parsed->user);
  }
  // query_raw keeps the escapes, so that an escaped '&' inside a value stays inside it.
  const char* query = parsed->query_raw != nullptr ? parsed->query_raw : parsed->query;
  if (query != nullptr) BFS_RETURN_IF_ERROR(ApplyQuery(uri, query, from_uri));

  SshOptions& ssh = base.ssh;
  if (ssh.host.empty()) ssh.host = from_uri.host;
  if (ssh.port == 22) ssh.port = from_uri.port;
  if (ssh.user.empty()) ssh.user = from_uri.user;
  if (ssh.private_key.empty()) ssh.private_key = from_uri.private_key;
  if (ssh.known_hosts.empty()) ssh.known_hosts = from_uri.known_hosts;
  if (!from_uri.verify_host_key) ssh.verify_host_key = false;
  if (base.nbd_ip.empty()) base.nbd_ip = ssh.host;
  return base;
}

std::string RemoteOptions::LibvirtUri() const {
  std::unique_ptr<xmlURI, UriFree> parsed(xmlParseURI(uri.c_str()));
  if (parsed == nullptr || parsed->scheme == nullptr || parsed->server == nullptr ||
      !SshTransport(parsed->scheme)) {
    return uri;
  }
  const auto set = [](char*& field, const std::string& value) {
    xmlFree(field);
    field = reinterpret_cast<char*>(xmlStrdup(reinterpret_cast<const xmlChar*>(value.c_str())));
  };
  if (parsed->port <= 0 && ssh.port != 22) parsed->port = static_cast<int>(ssh.port);
  if (parsed->user == nullptr && !ssh.user.empty()) set(parsed->user, ssh.user);
  std::string query = parsed->query_raw != nullptr ? parsed->query_raw : "";
  if (!ssh.private_key.empty() && query.find("keyfile=") == std::string::npos) {
    std::unique_ptr<xmlChar, decltype(xmlFree)> escaped(
        xmlURIEscapeStr(reinterpret_cast<const xmlChar*>(ssh.private_key.c_str()),
                        reinterpret_cast<const xmlChar*>("/")),
        xmlFree);
    query += std::string(query.empty() ? "" : "&") +
             "keyfile=" + reinterpret_cast<const char*>(escaped.get());
    xmlFree(parsed->query);
    parsed->query = nullptr;
    set(parsed->query_raw, query);
  }
  std::unique_ptr<xmlChar, decltype(xmlFree)> saved(xmlSaveUri(parsed.get()), xmlFree);
  return saved ? reinterpret_cast<const char*>(saved.get()) : uri;
}

Result<std::unique_ptr<Host>> ConnectHost(const RemoteOptions& remote) {
  if (!remote.remote()) return MakeLocalHost();
  return ConnectSsh(remote.ssh);
}

}  // namespace backupfs
