#include "capture/domain_xml.h"

#include <libxml/parser.h>
#include <libxml/tree.h>

#include <memory>

namespace backupfs {

namespace {

struct DocFreer {
  void operator()(xmlDocPtr d) const { xmlFreeDoc(d); }
};

bool Named(const xmlNode* n, const char* name) {
  return n->type == XML_ELEMENT_NODE && xmlStrEqual(n->name, BAD_CAST name);
}

const xmlNode* Child(const xmlNode* parent, const char* name) {
  for (const xmlNode* c = parent->children; c != nullptr; c = c->next) {
    if (Named(c, name)) return c;
  }
  return nullptr;
}

std::string Attr(const xmlNode* n, const char* name) {
  if (n == nullptr) return "";
  xmlChar* v = xmlGetProp(n, BAD_CAST name);
  if (v == nullptr) return "";
  std::string out(reinterpret_cast<const char*>(v));
  xmlFree(v);
  return out;
}

std::string SourceOf(const xmlNode* disk) {
  const xmlNode* src = Child(disk, "source");
  for (const char* attr : {"file", "dev", "name", "volume"}) {
    std::string v = Attr(src, attr);
    if (!v.empty()) return v;
  }
  return "";
}

Result<DomainDisk> ParseDisk(const xmlNode* n, const std::string& domain) {
  DomainDisk d;
  d.device = Attr(n, "device");
  if (d.device.empty()) d.device = "disk";
  d.type = Attr(n, "type");
  d.target = Attr(Child(n, "target"), "dev");
  d.format = Attr(Child(n, "driver"), "type");
  d.source = SourceOf(n);
  if (d.target.empty()) {
    return Status::InvalidArgument("domain " + domain + ": a disk has no <target dev=...>");
  }
  return d;
}

}  // namespace

Result<std::vector<DomainDisk>> ParseDomainDisks(std::string_view xml, const std::string& domain) {
  std::unique_ptr<xmlDoc, DocFreer> doc(
      xmlReadMemory(xml.data(), static_cast<int>(xml.size()), "domain.xml", nullptr,
                    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING));
  const xmlNode* root = doc ? xmlDocGetRootElement(doc.get()) : nullptr;
  if (root == nullptr || !Named(root, "domain")) {
    return Status::InvalidArgument("domain " + domain + ": its XML is not a <domain> document");
  }
  std::vector<DomainDisk> disks;
  const xmlNode* devices = Child(root, "devices");
  if (devices == nullptr) return disks;
  for (const xmlNode* c = devices->children; c != nullptr; c = c->next) {
    if (!Named(c, "disk")) continue;
    BFS_ASSIGN_OR_RETURN(DomainDisk d, ParseDisk(c, domain));
    if (d.device == "cdrom" || d.device == "floppy") continue;
    disks.push_back(std::move(d));
  }
  return disks;
}

}  // namespace backupfs
