#include "capture/libvirt.h"

#include <libvirt/virterror.h>

#include <cstdlib>
#include <cstring>
#include <mutex>

#include "common/domain_xml.h"

namespace backupfs {

namespace {

void IgnoreError(void* /*user*/, virErrorPtr /*error*/) {}

std::string LastError() {
  const char* msg = virGetLastErrorMessage();
  return msg != nullptr ? msg : "unknown libvirt error";
}

}  // namespace

bool LastErrorIs(int code) {
  virErrorPtr err = virGetLastError();
  return err != nullptr && err->code == code;
}

void SilenceLibvirtErrors() {
  // The global handler also serves every connection that sets none of its own. Once: the
  // domains of a fleet connect from several threads.
  static std::once_flag once;
  std::call_once(once, [] { virSetErrorFunc(nullptr, IgnoreError); });
}

Status LibvirtError(const std::string& what) { return Status::IOError(what + ": " + LastError()); }

Result<UniqueConnect> ConnectLibvirt(const std::string& uri) {
  RemoteOptions local;
  local.uri = uri;
  return ConnectLibvirt(local);
}

namespace {

// libvirt's credential callback: the user name and password given on the command line; any
// other question (or one we have no answer for) is left unanswered, which fails the login.
int AnswerCredentials(virConnectCredentialPtr cred, unsigned int ncred, void* data) {
  const auto* remote = static_cast<const RemoteOptions*>(data);
  for (unsigned int i = 0; i < ncred; i++) {
    const std::string* answer = nullptr;
    const bool user = cred[i].type == VIR_CRED_AUTHNAME || cred[i].type == VIR_CRED_USERNAME;
    if (user && !remote->libvirt_user.empty()) {
      answer = &remote->libvirt_user;
    } else if ((cred[i].type == VIR_CRED_PASSPHRASE || cred[i].type == VIR_CRED_NOECHOPROMPT) &&
               !remote->libvirt_password.empty()) {
      answer = &remote->libvirt_password;
    } else {
      return -1;
    }
    cred[i].result = strdup(answer->c_str());
    if (cred[i].result == nullptr) return -1;
    cred[i].resultlen = static_cast<unsigned int>(answer->size());
  }
  return 0;
}

}  // namespace

Result<UniqueConnect> ConnectLibvirt(const RemoteOptions& remote) {
  const std::string u = remote.uri.empty() ? kDefaultLibvirtUri : remote.LibvirtUri();
  int types[] = {VIR_CRED_AUTHNAME, VIR_CRED_USERNAME, VIR_CRED_PASSPHRASE, VIR_CRED_NOECHOPROMPT};
  virConnectAuth auth{types, 4, AnswerCredentials, const_cast<RemoteOptions*>(&remote)};
  const bool credentials = !remote.libvirt_user.empty() || !remote.libvirt_password.empty();
  UniqueConnect conn(credentials ? virConnectOpenAuth(u.c_str(), &auth, 0)
                                 : virConnectOpen(u.c_str()));
  if (!conn) {
    Status s = LibvirtError(
        "cannot connect to libvirt at " + u +
        (credentials ? " as user " + remote.libvirt_user + " (check --user and --password)" : ""));
    if (!remote.libvirt_password.empty()) {
      // libvirt does not quote a password, but make sure no message ever carries it.
      std::string text = s.message();
      for (size_t at; (at = text.find(remote.libvirt_password)) != std::string::npos;) {
        text.replace(at, remote.libvirt_password.size(), "***");
      }
      return Status::IOError(text);
    }
    return s;
  }
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

Status RequireNameFree(virConnectPtr conn, const std::string& name) {
  auto existing = LookupDomain(conn, name);
  if (existing.ok()) {
    return Status::FailedPrecondition("a domain named " + name +
                                      " exists already; -N gives the new one another name");
  }
  return existing.status().code() == StatusCode::kNotFound ? Status::Ok() : existing.status();
}

Result<UniqueDomain> DefineDomain(virConnectPtr conn, const std::string& xml,
                                  const std::string& name) {
  UniqueDomain dom(virDomainDefineXML(conn, xml.c_str()));
  if (!dom) return LibvirtError("cannot define domain " + name);
  return dom;
}

Status SetAutostart(virDomainPtr dom, const std::string& domain, bool autostart) {
  if (virDomainSetAutostart(dom, autostart ? 1 : 0) < 0) {
    return LibvirtError("domain " + domain + ": cannot set autostart");
  }
  return Status::Ok();
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

Result<std::string> CheckpointParentName(virDomainCheckpointPtr cpt, const std::string& domain) {
  UniqueCheckpoint parent(virDomainCheckpointGetParent(cpt, 0));
  if (parent) return std::string(virDomainCheckpointGetName(parent.get()));
  if (LastErrorIs(VIR_ERR_NO_DOMAIN_CHECKPOINT)) return std::string();
  return LibvirtError("domain " + domain + ": cannot find the parent of checkpoint " +
                      virDomainCheckpointGetName(cpt));
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

Status DeleteCheckpointMetadata(virDomainPtr dom, const std::string& domain,
                                const std::string& checkpoint) {
  BFS_ASSIGN_OR_RETURN(UniqueCheckpoint cpt, LookupCheckpoint(dom, domain, checkpoint));
  if (virDomainCheckpointDelete(cpt.get(), VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY) == 0) {
    return Status::Ok();
  }
  return LibvirtError("domain " + domain + ": cannot forget checkpoint " + checkpoint);
}

Status RedefineCheckpoint(virDomainPtr dom, const std::string& domain, const std::string& xml,
                          bool validate) {
  unsigned flags = VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE;
  if (validate) flags |= VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE_VALIDATE;
  UniqueCheckpoint cpt(virDomainCheckpointCreateXML(dom, xml.c_str(), flags));
  if (cpt) return Status::Ok();
  const std::string what = "domain " + domain + ": cannot redefine a checkpoint: " + LastError();
  // VALIDATE failing means the bitmap is gone or inconsistent: the chain cannot continue.
  if (validate && (LastErrorIs(VIR_ERR_CHECKPOINT_INCONSISTENT) ||
                   LastErrorIs(VIR_ERR_INVALID_ARG) || LastErrorIs(VIR_ERR_OPERATION_FAILED))) {
    return Status::FailedPrecondition(what);
  }
  return Status::IOError(what);
}

Result<uint64_t> CheckpointChangedBytes(virDomainCheckpointPtr cpt, const std::string& domain) {
  char* xml = virDomainCheckpointGetXMLDesc(cpt, VIR_DOMAIN_CHECKPOINT_XML_SIZE);
  if (xml == nullptr) {
    return LibvirtError("domain " + domain + ": cannot read the size of checkpoint " +
                        virDomainCheckpointGetName(cpt));
  }
  const std::string text(xml);
  std::free(xml);
  BFS_ASSIGN_OR_RETURN(CheckpointInfo info,
                       ParseCheckpointXml(text, "domain " + domain + ": checkpoint " +
                                                    virDomainCheckpointGetName(cpt)));
  return info.changed_bytes;
}

Status StartDomainPaused(virDomainPtr dom, const std::string& domain) {
  if (virDomainCreateWithFlags(dom, VIR_DOMAIN_START_PAUSED) == 0) return Status::Ok();
  return LibvirtError("domain " + domain + ": cannot start it paused");
}

Status DestroyDomain(virDomainPtr dom, const std::string& domain) {
  if (virDomainDestroy(dom) == 0) return Status::Ok();
  return LibvirtError("domain " + domain + ": cannot stop it");
}

Status SuspendDomain(virDomainPtr dom, const std::string& domain) {
  if (virDomainSuspend(dom) == 0) return Status::Ok();
  return LibvirtError("domain " + domain + ": cannot pause it");
}

Status ResumeDomain(virDomainPtr dom, const std::string& domain) {
  if (virDomainResume(dom) == 0) return Status::Ok();
  return LibvirtError("domain " + domain + ": cannot resume it");
}

namespace {

std::vector<const char*> CStrings(const std::vector<std::string>& v) {
  std::vector<const char*> out;
  for (const std::string& s : v) out.push_back(s.c_str());
  return out;
}

}  // namespace

Result<int> FreezeFilesystems(virDomainPtr dom, const std::string& domain,
                              const std::vector<std::string>& mountpoints) {
  std::vector<const char*> m = CStrings(mountpoints);
  int n = virDomainFSFreeze(dom, m.empty() ? nullptr : m.data(), m.size(), 0);
  if (n >= 0) return n;
  return Status::Unavailable("domain " + domain + ": guest agent freeze failed: " + LastError());
}

Status ThawFilesystems(virDomainPtr dom, const std::string& domain,
                       const std::vector<std::string>& mountpoints) {
  std::vector<const char*> m = CStrings(mountpoints);
  if (virDomainFSThaw(dom, m.empty() ? nullptr : m.data(), m.size(), 0) >= 0) return Status::Ok();
  return LibvirtError("domain " + domain + ": guest agent thaw failed");
}

Result<bool> DomainAutostart(virDomainPtr dom, const std::string& domain) {
  int autostart = 0;
  if (virDomainGetAutostart(dom, &autostart) != 0) {
    return LibvirtError("domain " + domain + ": cannot read its autostart flag");
  }
  return autostart != 0;
}

}  // namespace backupfs
