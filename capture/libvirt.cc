#include "capture/libvirt.h"

#include <libvirt/virterror.h>

#include <cstdlib>

namespace backupfs {

namespace {

void IgnoreError(void* /*user*/, virErrorPtr /*error*/) {}

std::string LastError() {
  const char* msg = virGetLastErrorMessage();
  return msg != nullptr ? msg : "unknown libvirt error";
}

bool LastErrorIs(int code) {
  virErrorPtr err = virGetLastError();
  return err != nullptr && err->code == code;
}

}  // namespace

void SilenceLibvirtErrors() {
  // The global handler also serves every connection that sets none of its own.
  virSetErrorFunc(nullptr, IgnoreError);
}

Status LibvirtError(const std::string& what) { return Status::IOError(what + ": " + LastError()); }

Result<UniqueConnect> ConnectLibvirt(const std::string& uri) {
  const std::string u = uri.empty() ? kDefaultLibvirtUri : uri;
  UniqueConnect conn(virConnectOpen(u.c_str()));
  if (!conn) return LibvirtError("cannot connect to libvirt at " + u);
  return conn;
}

Result<UniqueDomain> LookupDomain(virConnectPtr conn, const std::string& name) {
  UniqueDomain dom(virDomainLookupByName(conn, name.c_str()));
  if (dom) return dom;
  if (LastErrorIs(VIR_ERR_NO_DOMAIN)) {
    return Status::NotFound("domain " + name + " not found: " + LastError());
  }
  return LibvirtError("cannot look up domain " + name);
}

Result<bool> DomainIsActive(virDomainPtr dom, const std::string& name) {
  int active = virDomainIsActive(dom);
  if (active < 0) return LibvirtError("domain " + name + ": cannot read its state");
  return active == 1;
}

Result<std::string> DomainXml(virDomainPtr dom, const std::string& name) {
  char* xml = virDomainGetXMLDesc(dom, 0);
  if (xml == nullptr) return LibvirtError("domain " + name + ": cannot read its XML");
  std::string out(xml);
  std::free(xml);
  return out;
}

Result<UniqueCheckpoint> LookupCheckpoint(virDomainPtr dom, const std::string& domain,
                                          const std::string& checkpoint) {
  UniqueCheckpoint cpt(virDomainCheckpointLookupByName(dom, checkpoint.c_str(), 0));
  if (cpt) return cpt;
  const std::string what = "domain " + domain + ": checkpoint " + checkpoint;
  if (LastErrorIs(VIR_ERR_NO_DOMAIN_CHECKPOINT)) {
    return Status::NotFound(what + " not found: " + LastError());
  }
  return LibvirtError(what);
}

Result<std::vector<std::string>> ListCheckpointNames(virDomainPtr dom, const std::string& domain) {
  virDomainCheckpointPtr* cpts = nullptr;
  int n = virDomainListAllCheckpoints(dom, &cpts, 0);
  if (n < 0) return LibvirtError("domain " + domain + ": cannot list checkpoints");
  std::vector<std::string> names;
  for (int i = 0; i < n; i++) {
    UniqueCheckpoint owned(cpts[i]);
    const char* name = virDomainCheckpointGetName(owned.get());
    if (name != nullptr) names.emplace_back(name);
  }
  std::free(cpts);
  return names;
}

Result<std::string> CheckpointXml(virDomainCheckpointPtr cpt, const std::string& domain) {
  char* xml = virDomainCheckpointGetXMLDesc(cpt, 0);
  if (xml == nullptr) {
    const char* name = virDomainCheckpointGetName(cpt);
    return LibvirtError("domain " + domain + ": cannot read the XML of checkpoint " +
                        (name != nullptr ? name : "?"));
  }
  std::string out(xml);
  std::free(xml);
  return out;
}

Status DeleteCheckpoint(virDomainPtr dom, const std::string& domain,
                        const std::string& checkpoint) {
  BFS_ASSIGN_OR_RETURN(UniqueCheckpoint cpt, LookupCheckpoint(dom, domain, checkpoint));
  if (virDomainCheckpointDelete(cpt.get(), 0) < 0) {
    return LibvirtError("domain " + domain + ": cannot delete checkpoint " + checkpoint);
  }
  return Status::Ok();
}

}  // namespace backupfs
