#include "restore/remote_target.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <cstring>

namespace backupfs {
namespace {

// `key = "value"` or `key = 1` on a line of a libvirt config file ("" when not set).
std::string ConfSetting(const std::string& conf, const std::string& key) {
  size_t pos = 0;
  while (pos < conf.size()) {
    size_t end = conf.find('\n', pos);
    if (end == std::string::npos) end = conf.size();
    const std::string line = conf.substr(pos, end - pos);
    pos = end + 1;
    const size_t eq = line.find('=');
    if (line.rfind(key, 0) != 0 || eq == std::string::npos) continue;
    if (line.find_first_not_of(" \t", key.size()) != eq) continue;  // a longer key
    std::string value = line.substr(eq + 1);
    value.erase(0, value.find_first_not_of(" \t\""));
    value.erase(value.find_last_not_of(" \t\r\"") + 1);
    return value;
  }
  return "";
}

// --user/--password answer libvirt's credential questions.
int AnswerCredentials(virConnectCredentialPtr cred, unsigned int ncred, void* data) {
  const auto* remote = static_cast<const RemoteOptions*>(data);
  for (unsigned int i = 0; i < ncred; ++i) {
    const std::string* answer = nullptr;
    if (cred[i].type == VIR_CRED_AUTHNAME || cred[i].type == VIR_CRED_USERNAME) {
      answer = &remote->libvirt_user;
    } else if (cred[i].type == VIR_CRED_PASSPHRASE || cred[i].type == VIR_CRED_NOECHOPROMPT) {
      answer = &remote->libvirt_password;
    }
    if (answer == nullptr || answer->empty()) return -1;
    cred[i].result = strdup(answer->c_str());
    if (cred[i].result == nullptr) return -1;
    cred[i].resultlen = static_cast<unsigned int>(answer->size());
  }
  return 0;
}

}  // namespace

HostTls ParseHostTls(const std::string& qemu_conf) {
  HostTls tls;
  // default_* first: backup_* wins where both are set.
  for (const char* prefix : {"default_tls_x509_", "backup_tls_x509_"}) {
    const std::string dir = ConfSetting(qemu_conf, std::string(prefix) + "cert_dir");
    if (!dir.empty()) tls.dir = dir;
    const std::string verify = ConfSetting(qemu_conf, std::string(prefix) + "verify");
    if (!verify.empty()) tls.verify = verify != "0";
  }
  return tls;
}

HostTls ReadHostTls(Host& host) {
  auto conf = host.ReadFile("/etc/libvirt/qemu.conf");
  return conf.ok() ? ParseHostTls(*conf) : HostTls();
}

Result<UniqueConnect> ConnectLibvirtAs(const std::string& uri, const RemoteOptions& remote) {
  if (remote.libvirt_user.empty() && remote.libvirt_password.empty()) return ConnectLibvirt(uri);
  int types[] = {VIR_CRED_AUTHNAME, VIR_CRED_USERNAME, VIR_CRED_PASSPHRASE, VIR_CRED_NOECHOPROMPT};
  virConnectAuth auth{types, sizeof(types) / sizeof(types[0]), AnswerCredentials,
                      const_cast<RemoteOptions*>(&remote)};
  const std::string u = uri.empty() ? "qemu:///system" : uri;
  UniqueConnect conn(virConnectOpenAuth(u.c_str(), &auth, 0));
  if (!conn) {
    virErrorPtr e = virGetLastError();
    return Status::IOError(
        "cannot connect to libvirt at " + u + " as user '" + remote.libvirt_user +
        "': " + (e != nullptr && e->message != nullptr ? e->message : "unknown error") +
        " (check --user and --password)");
  }
  return conn;
}

}  // namespace backupfs
