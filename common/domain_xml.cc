#include "common/domain_xml.h"

#include <libxml/parser.h>
#include <libxml/tree.h>

#include <charconv>
#include <map>
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
  d.iothread = Attr(Child(n, "driver"), "iothread");
  d.source = SourceOf(n);
  if (d.target.empty()) {
    return Status::InvalidArgument("domain " + domain + ": a disk has no <target dev=...>");
  }
  return d;
}

}  // namespace

namespace {

using UniqueDoc = std::unique_ptr<xmlDoc, DocFreer>;

// Parses `xml`, whose root element must be `root_name`; `what` names it in the error.
Result<UniqueDoc> ParseRoot(std::string_view xml, const char* root_name, const std::string& what,
                            const xmlNode*& root) {
  UniqueDoc doc(xmlReadMemory(xml.data(), static_cast<int>(xml.size()), "libvirt.xml", nullptr,
                              XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING));
  root = doc ? xmlDocGetRootElement(doc.get()) : nullptr;
  if (root == nullptr || !Named(root, root_name)) {
    return Status::InvalidArgument(what + " is not a <" + root_name + "> document");
  }
  return doc;
}

Result<UniqueDoc> ParseDomain(std::string_view xml, const std::string& domain,
                              const xmlNode*& root) {
  return ParseRoot(xml, "domain", "domain " + domain + ": its XML", root);
}

std::string Text(const xmlNode* n) {
  if (n == nullptr) return "";
  xmlChar* v = xmlNodeGetContent(n);
  std::string out = v != nullptr ? reinterpret_cast<const char*>(v) : "";
  xmlFree(v);
  return out;
}

}  // namespace

Result<std::vector<DomainDisk>> ParseDomainDisks(std::string_view xml, const std::string& domain) {
  const xmlNode* root = nullptr;
  BFS_ASSIGN_OR_RETURN(UniqueDoc doc, ParseDomain(xml, domain, root));
  std::vector<DomainDisk> disks;
  const xmlNode* devices = Child(root, "devices");
  if (devices == nullptr) return disks;
  // A SCSI disk runs in its controller's iothread: <controller type='scsi' index='N'>
  // <driver iothread='M'/>, the disk naming it in <address controller='N'> (default 0).
  std::map<std::string, std::string> scsi_iothreads;
  for (const xmlNode* c = devices->children; c != nullptr; c = c->next) {
    if (!Named(c, "controller") || Attr(c, "type") != "scsi") continue;
    const std::string index = Attr(c, "index");
    scsi_iothreads[index.empty() ? "0" : index] = Attr(Child(c, "driver"), "iothread");
  }
  for (const xmlNode* c = devices->children; c != nullptr; c = c->next) {
    if (!Named(c, "disk")) continue;
    BFS_ASSIGN_OR_RETURN(DomainDisk d, ParseDisk(c, domain));
    if (d.device == "cdrom" || d.device == "floppy") continue;
    if (d.iothread.empty() && Attr(Child(c, "target"), "bus") == "scsi") {
      std::string controller = Attr(Child(c, "address"), "controller");
      auto it = scsi_iothreads.find(controller.empty() ? "0" : controller);
      if (it != scsi_iothreads.end()) d.iothread = it->second;
    }
    disks.push_back(std::move(d));
  }
  return disks;
}

Result<std::vector<BootFile>> ParseBootFiles(std::string_view xml, const std::string& domain) {
  const xmlNode* root = nullptr;
  BFS_ASSIGN_OR_RETURN(UniqueDoc doc, ParseDomain(xml, domain, root));
  std::vector<BootFile> files;
  const xmlNode* os = Child(root, "os");
  if (os == nullptr) return files;
  for (const char* setting : {"loader", "nvram", "kernel", "initrd"}) {
    std::string path = Text(Child(os, setting));
    if (!path.empty()) files.push_back({setting, path});
  }
  return files;
}

Result<bool> HasGuestAgentChannel(std::string_view xml, const std::string& domain) {
  const xmlNode* root = nullptr;
  BFS_ASSIGN_OR_RETURN(UniqueDoc doc, ParseDomain(xml, domain, root));
  const xmlNode* devices = Child(root, "devices");
  if (devices == nullptr) return false;
  for (const xmlNode* c = devices->children; c != nullptr; c = c->next) {
    if (Named(c, "channel") && Attr(Child(c, "target"), "name") == "org.qemu.guest_agent.0") {
      return true;
    }
  }
  return false;
}

Result<std::string> ParseDomainName(std::string_view xml, const std::string& what) {
  const xmlNode* root = nullptr;
  BFS_ASSIGN_OR_RETURN(UniqueDoc doc, ParseRoot(xml, "domain", what, root));
  return Text(Child(root, "name"));
}

Result<CheckpointInfo> ParseCheckpointXml(std::string_view xml, const std::string& what) {
  const xmlNode* root = nullptr;
  BFS_ASSIGN_OR_RETURN(UniqueDoc doc, ParseRoot(xml, "domaincheckpoint", what, root));
  CheckpointInfo out;
  out.creation_time = Text(Child(root, "creationTime"));
  if (const xmlNode* parent = Child(root, "parent")) out.parent = Text(Child(parent, "name"));
  const xmlNode* disks = Child(root, "disks");
  for (const xmlNode* c = disks ? disks->children : nullptr; c != nullptr; c = c->next) {
    if (!Named(c, "disk")) continue;
    const std::string size = Attr(c, "size");
    if (size.empty()) continue;
    uint64_t n = 0;
    const auto [end, ec] = std::from_chars(size.data(), size.data() + size.size(), n);
    if (ec != std::errc() || end != size.data() + size.size()) {
      return Status::InvalidArgument(what + ": disk " + Attr(c, "name") + " has size='" + size +
                                     "', not a number of bytes");
    }
    out.changed_bytes += n;
  }
  return out;
}

Result<BackupJobInfo> ParseBackupJobXml(std::string_view xml, const std::string& what) {
  const xmlNode* root = nullptr;
  BFS_ASSIGN_OR_RETURN(UniqueDoc doc, ParseRoot(xml, "domainbackup", what, root));
  BackupJobInfo out;
  out.socket = Attr(Child(root, "server"), "socket");
  const xmlNode* disks = Child(root, "disks");
  for (const xmlNode* c = disks ? disks->children : nullptr; c != nullptr; c = c->next) {
    if (!Named(c, "disk")) continue;
    const std::string file = Attr(Child(c, "scratch"), "file");
    if (!file.empty()) out.scratch_files.push_back(file);
  }
  return out;
}

}  // namespace backupfs
