#include "restore/instant_record.h"

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlwriter.h>

#include <charconv>
#include <memory>
#include <optional>

namespace backupfs {
namespace {

struct BufferFreer {
  void operator()(xmlBuffer* b) const { xmlBufferFree(b); }
};
struct WriterFreer {
  void operator()(xmlTextWriter* w) const { xmlFreeTextWriter(w); }
};
struct DocFreer {
  void operator()(xmlDoc* d) const { xmlFreeDoc(d); }
};

const xmlChar* X(const char* s) { return reinterpret_cast<const xmlChar*>(s); }

void Attribute(xmlTextWriter* w, const char* name, const std::string& value) {
  xmlTextWriterWriteAttribute(w, X(name), X(value.c_str()));
}

std::optional<std::string> GetAttribute(xmlNode* node, const char* name) {
  std::unique_ptr<xmlChar, decltype(xmlFree)> v(xmlGetProp(node, X(name)), xmlFree);
  if (!v) return std::nullopt;
  return std::string(reinterpret_cast<const char*>(v.get()));
}

bool Named(xmlNode* node, const char* name) {
  return node->type == XML_ELEMENT_NODE && xmlStrcmp(node->name, X(name)) == 0;
}

}  // namespace

std::string InstantRecordXml(const InstantRecord& r) {
  std::unique_ptr<xmlBuffer, BufferFreer> buf(xmlBufferCreate());
  std::unique_ptr<xmlTextWriter, WriterFreer> w(xmlNewTextWriterMemory(buf.get(), 0));
  if (!buf || !w) throw std::bad_alloc();
  xmlTextWriterStartElement(w.get(), X("instant"));
  Attribute(w.get(), "saveset", r.saveset);
  if (!r.store_options.empty()) Attribute(w.get(), "store-options", r.store_options);
  Attribute(w.get(), "point", r.point);
  Attribute(w.get(), "workdir", r.workdir);
  Attribute(w.get(), "mount", r.mount);
  if (r.served) {
    xmlTextWriterStartElement(w.get(), X("served"));
    Attribute(w.get(), "host", r.served->host);
    Attribute(w.get(), "dir", r.served->dir);
    Attribute(w.get(), "address", r.served->address);
    Attribute(w.get(), "tls", r.served->tls ? "1" : "0");
    Attribute(w.get(), "tls-dir", r.served->tls_dir);
    xmlTextWriterEndElement(w.get());
  }
  for (const InstantDisk& d : r.disks) {
    xmlTextWriterStartElement(w.get(), X("disk"));
    Attribute(w.get(), "target", d.target);
    Attribute(w.get(), "overlay", d.overlay);
    Attribute(w.get(), "backing", d.backing);
    if (r.served) {
      Attribute(w.get(), "nbd-port", std::to_string(d.nbd_port));
      Attribute(w.get(), "nbdkit-pid", std::to_string(d.nbdkit_pid));
    }
    xmlTextWriterEndElement(w.get());
  }
  for (const std::string& f : r.files) {
    xmlTextWriterStartElement(w.get(), X("file"));
    Attribute(w.get(), "path", f);
    xmlTextWriterEndElement(w.get());
  }
  if (!r.migrate_to.empty() || !r.migration.empty()) {
    xmlTextWriterStartElement(w.get(), X("migration"));
    Attribute(w.get(), "to", r.migrate_to);
    Attribute(w.get(), "state", r.migration);
    xmlTextWriterEndElement(w.get());
  }
  xmlTextWriterEndElement(w.get());
  w.reset();  // flushes into buf
  return std::string(reinterpret_cast<const char*>(xmlBufferContent(buf.get())),
                     static_cast<size_t>(xmlBufferLength(buf.get())));
}

Result<InstantRecord> ParseInstantRecord(std::string_view xml, const std::string& what) {
  std::unique_ptr<xmlDoc, DocFreer> doc(
      xmlReadMemory(xml.data(), static_cast<int>(xml.size()), "instant.xml", nullptr,
                    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING));
  if (!doc) return Status::Corruption(what + ": backupfs metadata is not well-formed XML");
  xmlNode* root = xmlDocGetRootElement(doc.get());
  if (root == nullptr || !Named(root, "instant")) {
    return Status::Corruption(what + ": backupfs metadata has no <instant> element");
  }
  auto need = [&](xmlNode* node, const char* name) -> Result<std::string> {
    auto v = GetAttribute(node, name);
    if (!v) {
      return Status::Corruption(what + ": backupfs metadata: <" +
                                reinterpret_cast<const char*>(node->name) + "> has no " + name);
    }
    return *v;
  };
  auto number = [&](xmlNode* node, const char* name) -> Result<unsigned> {
    BFS_ASSIGN_OR_RETURN(std::string text, need(node, name));
    unsigned value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size()) {
      return Status::Corruption(what + ": backupfs metadata: " + name + "='" + text +
                                "' is not a number");
    }
    return value;
  };
  InstantRecord r;
  BFS_ASSIGN_OR_RETURN(r.saveset, need(root, "saveset"));
  r.store_options = GetAttribute(root, "store-options").value_or("");  // absent: a directory
  BFS_ASSIGN_OR_RETURN(r.point, need(root, "point"));
  BFS_ASSIGN_OR_RETURN(r.workdir, need(root, "workdir"));
  BFS_ASSIGN_OR_RETURN(r.mount, need(root, "mount"));
  for (xmlNode* n = root->children; n != nullptr; n = n->next) {
    if (Named(n, "disk")) {
      InstantDisk d;
      BFS_ASSIGN_OR_RETURN(d.target, need(n, "target"));
      BFS_ASSIGN_OR_RETURN(d.overlay, need(n, "overlay"));
      BFS_ASSIGN_OR_RETURN(d.backing, need(n, "backing"));
      if (GetAttribute(n, "nbd-port")) {
        BFS_ASSIGN_OR_RETURN(d.nbd_port, number(n, "nbd-port"));
        BFS_ASSIGN_OR_RETURN(unsigned pid, number(n, "nbdkit-pid"));
        d.nbdkit_pid = static_cast<int>(pid);
      }
      r.disks.push_back(std::move(d));
    } else if (Named(n, "served")) {
      InstantServed s;
      BFS_ASSIGN_OR_RETURN(s.host, need(n, "host"));
      BFS_ASSIGN_OR_RETURN(s.dir, need(n, "dir"));
      BFS_ASSIGN_OR_RETURN(s.address, need(n, "address"));
      const std::optional<std::string> tls = GetAttribute(n, "tls");  // absent: "0"
      s.tls = tls && *tls == "1";
      BFS_ASSIGN_OR_RETURN(s.tls_dir, need(n, "tls-dir"));
      r.served = std::move(s);
    } else if (Named(n, "file")) {
      BFS_ASSIGN_OR_RETURN(std::string path, need(n, "path"));
      r.files.push_back(std::move(path));
    } else if (Named(n, "migration")) {
      BFS_ASSIGN_OR_RETURN(r.migrate_to, need(n, "to"));
      BFS_ASSIGN_OR_RETURN(r.migration, need(n, "state"));
    }
  }
  if (r.disks.empty()) return Status::Corruption(what + ": backupfs metadata names no disk");
  return r;
}

}  // namespace backupfs
