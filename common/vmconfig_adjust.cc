#include "common/vmconfig_adjust.h"

#include <libxml/parser.h>
#include <libxml/tree.h>

#include <memory>
#include <vector>

namespace backupfs {
namespace {

struct DocFreer {
  void operator()(xmlDocPtr d) const { xmlFreeDoc(d); }
};
using UniqueDoc = std::unique_ptr<xmlDoc, DocFreer>;

bool Named(const xmlNode* n, const char* name) {
  return n->type == XML_ELEMENT_NODE && xmlStrEqual(n->name, BAD_CAST name);
}

xmlNode* Child(xmlNode* parent, const char* name) {
  for (xmlNode* c = parent ? parent->children : nullptr; c != nullptr; c = c->next) {
    if (Named(c, name)) return c;
  }
  return nullptr;
}

std::vector<xmlNode*> Children(xmlNode* parent, const char* name) {
  std::vector<xmlNode*> out;
  for (xmlNode* c = parent ? parent->children : nullptr; c != nullptr; c = c->next) {
    if (Named(c, name)) out.push_back(c);
  }
  return out;
}

std::string Attr(xmlNode* n, const char* name) {
  xmlChar* v = n ? xmlGetProp(n, BAD_CAST name) : nullptr;
  if (v == nullptr) return "";
  std::string out(reinterpret_cast<const char*>(v));
  xmlFree(v);
  return out;
}

void Remove(xmlNode* n) {
  if (n == nullptr) return;
  xmlUnlinkNode(n);
  xmlFreeNode(n);
}

void SetText(xmlNode* n, const std::string& text) {
  xmlNodeSetContent(n, nullptr);
  xmlNodeAddContent(n, BAD_CAST text.c_str());  // escapes what needs escaping
}

// A restored disk: a plain file (or device) in its new format, with nothing behind it.
void PointDiskAt(xmlNode* disk, const VmConfigChanges::Disk& d) {
  xmlSetProp(disk, BAD_CAST "type", BAD_CAST(d.block ? "block" : "file"));
  Remove(Child(disk, "backingStore"));
  xmlNode* driver = Child(disk, "driver");
  if (driver == nullptr) {
    driver = xmlNewChild(disk, nullptr, BAD_CAST "driver", nullptr);
    xmlSetProp(driver, BAD_CAST "name", BAD_CAST "qemu");
  }
  xmlSetProp(driver, BAD_CAST "type", BAD_CAST d.format.c_str());
  // A new <source> in the old one's place: its pool/volume/network attributes, hosts and
  // data store described the old storage.
  xmlNode* source = xmlNewNode(nullptr, BAD_CAST "source");
  xmlSetProp(source, BAD_CAST(d.block ? "dev" : "file"), BAD_CAST d.path.c_str());
  if (xmlNode* old = Child(disk, "source")) {
    xmlFreeNode(xmlReplaceNode(old, source));
  } else {
    xmlAddNextSibling(driver, source);
  }
}

void AdjustDisks(xmlNode* devices, const VmConfigChanges& changes) {
  for (xmlNode* disk : Children(devices, "disk")) {
    const std::string target = Attr(Child(disk, "target"), "dev");
    auto it = changes.disks.find(target);
    if (it == changes.disks.end()) {
      Remove(disk);  // not restored (excluded, missing at this point), or a cdrom/floppy
    } else {
      PointDiskAt(disk, it->second);
    }
  }
}

void AdjustBootFiles(xmlNode* os, const VmConfigChanges& changes) {
  for (const auto& [setting, path] : changes.boot_files) {
    if (xmlNode* n = Child(os, setting.c_str())) SetText(n, path);
  }
}

Result<UniqueDoc> ParseDocument(std::string_view xml, const char* root_name,
                                const std::string& what, xmlNode*& root) {
  UniqueDoc doc(xmlReadMemory(xml.data(), static_cast<int>(xml.size()), what.c_str(), nullptr,
                              XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING));
  root = doc ? xmlDocGetRootElement(doc.get()) : nullptr;
  if (root == nullptr || !Named(root, root_name)) {
    return Status::InvalidArgument(what + ": not a libvirt <" + root_name + "> document");
  }
  return doc;
}

Result<std::string> Serialize(xmlDoc* doc, const std::string& what) {
  xmlChar* out = nullptr;
  int size = 0;
  xmlDocDumpMemoryEnc(doc, &out, &size, "UTF-8");
  if (out == nullptr) return Status::IOError(what + ": cannot serialize the adjusted XML");
  std::string text(reinterpret_cast<const char*>(out), static_cast<size_t>(size));
  xmlFree(out);
  return text;
}

}  // namespace

std::string DefaultRestoredName(const std::string& original) {
  return original.starts_with("restore") ? original : "restore_" + original;
}

Result<std::string> AdjustDomainXml(std::string_view xml, const VmConfigChanges& changes,
                                    const std::string& what) {
  xmlNode* root = nullptr;
  BFS_ASSIGN_OR_RETURN(UniqueDoc doc, ParseDocument(xml, "domain", what, root));
  Remove(Child(root, "uuid"));
  xmlNode* name = Child(root, "name");
  if (name == nullptr) name = xmlNewChild(root, nullptr, BAD_CAST "name", nullptr);
  SetText(name, changes.name);
  AdjustDisks(Child(root, "devices"), changes);
  AdjustBootFiles(Child(root, "os"), changes);
  return Serialize(doc.get(), what);
}

Result<std::string> WithoutCheckpointParent(std::string_view xml, const std::string& what) {
  xmlNode* root = nullptr;
  BFS_ASSIGN_OR_RETURN(UniqueDoc doc, ParseDocument(xml, "domaincheckpoint", what, root));
  Remove(Child(root, "parent"));
  return Serialize(doc.get(), what);
}

}  // namespace backupfs
