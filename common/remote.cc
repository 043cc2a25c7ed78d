#include "common/remote.h"

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

}  // namespace

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

Result<std::unique_ptr<Host>> ConnectHost(const RemoteOptions& remote) {
  if (!remote.remote()) return MakeLocalHost();
  return ConnectSsh(remote.ssh);
}

}  // namespace backupfs
