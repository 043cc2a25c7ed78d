#include "common/host_tls.h"

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

}  // namespace backupfs
