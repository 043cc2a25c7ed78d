#include "capture/libvirt_instant.h"

#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>

#include <memory>

#include <cstdio>

namespace backupfs {

Status StartDomain(virDomainPtr dom, const std::string& domain) {
  if (virDomainCreate(dom) == 0) return Status::Ok();
  return LibvirtError("domain " + domain + ": cannot start it");
}

Status UndefineDomain(virDomainPtr dom, const std::string& domain) {
  const unsigned flags = VIR_DOMAIN_UNDEFINE_NVRAM | VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                         VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
                         VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA;
  if (virDomainUndefineFlags(dom, flags) == 0) return Status::Ok();
  return LibvirtError("domain " + domain + ": cannot undefine it");
}

Status SetDomainMetadata(virDomainPtr dom, const std::string& domain, const std::string& uri,
                         const std::string& prefix, const std::string& xml) {
  int active = virDomainIsActive(dom);
  if (active < 0) return LibvirtError("domain " + domain + ": cannot read its state");
  const unsigned flags = VIR_DOMAIN_AFFECT_CONFIG | (active ? VIR_DOMAIN_AFFECT_LIVE : 0);
  const char* text = xml.empty() ? nullptr : xml.c_str();
  const char* key = xml.empty() ? nullptr : prefix.c_str();
  if (virDomainSetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, text, key, uri.c_str(), flags) == 0) {
    return Status::Ok();
  }
  return LibvirtError("domain " + domain + ": cannot " + (xml.empty() ? "remove" : "record") +
                      " backupfs metadata");
}

Result<std::optional<std::string>> DomainMetadata(virDomainPtr dom, const std::string& domain,
                                                  const std::string& uri) {
  std::unique_ptr<char, decltype(&free)> text(
      virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, uri.c_str(),
                           VIR_DOMAIN_AFFECT_CURRENT),
      &free);
  if (text) return std::optional<std::string>(text.get());
  if (LastErrorIs(VIR_ERR_NO_DOMAIN_METADATA)) return std::optional<std::string>();
  return LibvirtError("domain " + domain + ": cannot read its metadata");
}

Result<std::vector<UniqueDomain>> ListAllDomains(virConnectPtr conn) {
  virDomainPtr* list = nullptr;
  int n = virConnectListAllDomains(conn, &list, 0);
  if (n < 0) return LibvirtError("cannot list the domains");
  std::vector<UniqueDomain> out;
  for (int i = 0; i < n; ++i) out.emplace_back(list[i]);
  free(list);
  return out;
}

std::string DomainName(virDomainPtr dom) {
  const char* name = virDomainGetName(dom);
  return name != nullptr ? name : "?";
}

namespace {

struct XmlDocFreer {
  void operator()(xmlDoc* d) const { xmlFreeDoc(d); }
};
struct XPathContextFreer {
  void operator()(xmlXPathContext* c) const { xmlXPathFreeContext(c); }
};
struct XPathObjectFreer {
  void operator()(xmlXPathObject* o) const { xmlXPathFreeObject(o); }
};

// The text of the first node `xpath` selects in `xml`, or nullopt.
std::optional<std::string> XPathText(const std::string& xml, const char* xpath) {
  std::unique_ptr<xmlDoc, XmlDocFreer> doc(
      xmlReadMemory(xml.data(), static_cast<int>(xml.size()), "capabilities.xml", nullptr,
                    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING));
  if (!doc) return std::nullopt;
  std::unique_ptr<xmlXPathContext, XPathContextFreer> ctx(xmlXPathNewContext(doc.get()));
  if (!ctx) return std::nullopt;
  std::unique_ptr<xmlXPathObject, XPathObjectFreer> obj(
      xmlXPathEvalExpression(reinterpret_cast<const xmlChar*>(xpath), ctx.get()));
  if (!obj || obj->nodesetval == nullptr || obj->nodesetval->nodeNr == 0) return std::nullopt;
  std::unique_ptr<xmlChar, decltype(xmlFree)> text(xmlNodeGetContent(obj->nodesetval->nodeTab[0]),
                                                   xmlFree);
  if (!text) return std::nullopt;
  return std::string(reinterpret_cast<const char*>(text.get()));
}

}  // namespace

Result<std::optional<QemuProcessUser>> QemuUser(virConnectPtr conn) {
  std::unique_ptr<char, decltype(&free)> caps(virConnectGetCapabilities(conn), &free);
  if (!caps) return LibvirtError("cannot read libvirt's capabilities");
  // <secmodel><model>dac</model><baselabel type='qemu'>+64055:+107</baselabel></secmodel>
  auto label = XPathText(caps.get(), "//secmodel[model='dac']/baselabel[@type='qemu']");
  if (!label) return std::optional<QemuProcessUser>();
  unsigned long uid = 0, gid = 0;
  if (std::sscanf(label->c_str(), "+%lu:+%lu", &uid, &gid) != 2) {
    return Status::Corruption("libvirt's DAC label for QEMU is not +UID:+GID: " + *label);
  }
  return std::optional<QemuProcessUser>(
      QemuProcessUser{static_cast<uid_t>(uid), static_cast<gid_t>(gid)});
}

Result<BlockJobState> GetBlockJob(virDomainPtr dom, const std::string& domain,
                                  const std::string& disk) {
  BlockJobState s;
  // A shut-off domain runs no jobs (and libvirt refuses the question).
  const int active = virDomainIsActive(dom);
  if (active < 0) return LibvirtError("domain " + domain + ": cannot read its state");
  if (active == 0) return s;
  virDomainBlockJobInfo info{};
  int r = virDomainGetBlockJobInfo(dom, disk.c_str(), &info, 0);
  if (r < 0)
    return LibvirtError("domain " + domain + " disk " + disk + ": cannot read its block job");
  s.exists = r == 1;
  s.type = info.type;
  s.cur = info.cur;
  s.end = info.end;
  return s;
}

Status StartBlockCopy(virDomainPtr dom, const std::string& domain, const std::string& disk,
                      const std::string& target, uint64_t bytes_per_second) {
  // The target is a file name in a document: escape it as XML text.
  std::unique_ptr<xmlChar, decltype(xmlFree)> escaped(
      xmlEncodeSpecialChars(nullptr, reinterpret_cast<const xmlChar*>(target.c_str())), xmlFree);
  const std::string xml = "<disk type='file'><driver type='qcow2'/><source file='" +
                          std::string(reinterpret_cast<const char*>(escaped.get())) + "'/></disk>";
  const unsigned flags = VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB;
  virTypedParameter limit{};
  std::snprintf(limit.field, sizeof limit.field, "%s", VIR_DOMAIN_BLOCK_COPY_BANDWIDTH);
  limit.type = VIR_TYPED_PARAM_ULLONG;
  limit.value.ul = bytes_per_second;
  const int nparams = bytes_per_second > 0 ? 1 : 0;
  if (virDomainBlockCopy(dom, disk.c_str(), xml.c_str(), &limit, nparams, flags) == 0) {
    return Status::Ok();
  }
  return LibvirtError("domain " + domain + " disk " + disk + ": cannot start the copy to " +
                      target);
}

Status SetBlockJobSpeed(virDomainPtr dom, const std::string& domain, const std::string& disk,
                        uint64_t bytes_per_second) {
  if (virDomainBlockJobSetSpeed(dom, disk.c_str(), bytes_per_second,
                                VIR_DOMAIN_BLOCK_JOB_SPEED_BANDWIDTH_BYTES) == 0) {
    return Status::Ok();
  }
  return LibvirtError("domain " + domain + " disk " + disk + ": cannot set its copy's speed");
}

Status PivotBlockCopy(virDomainPtr dom, const std::string& domain, const std::string& disk) {
  if (virDomainBlockJobAbort(dom, disk.c_str(), VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT) == 0) {
    return Status::Ok();
  }
  return LibvirtError("domain " + domain + " disk " + disk + ": cannot switch to the copy");
}

Status AbortBlockJob(virDomainPtr dom, const std::string& domain, const std::string& disk) {
  if (virDomainBlockJobAbort(dom, disk.c_str(), 0) == 0) return Status::Ok();
  return LibvirtError("domain " + domain + " disk " + disk + ": cannot cancel its block job");
}

}  // namespace backupfs
