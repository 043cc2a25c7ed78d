#include "storage/s3_xml.h"

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlwriter.h>

#include <charconv>
#include <cstdio>
#include <ctime>
#include <memory>
#include <mutex>

namespace backupfs {
namespace {

struct DocFree {
  void operator()(xmlDoc* d) const { xmlFreeDoc(d); }
};
struct CharFree {
  void operator()(xmlChar* c) const { xmlFree(c); }
};
struct BufferFree {
  void operator()(xmlBuffer* b) const { xmlBufferFree(b); }
};
struct WriterFree {
  void operator()(xmlTextWriter* w) const { xmlFreeTextWriter(w); }
};
using Doc = std::unique_ptr<xmlDoc, DocFree>;

// libxml2 wants its global state set up once before threads use it.
void InitXml() {
  static std::once_flag once;
  std::call_once(once, [] { xmlInitParser(); });
}

Result<Doc> ParseDoc(std::string_view xml, const char* what) {
  InitXml();
  Doc doc(xmlReadMemory(xml.data(), static_cast<int>(xml.size()), nullptr, nullptr,
                        XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING));
  if (doc == nullptr || xmlDocGetRootElement(doc.get()) == nullptr) {
    return Status::IOError(std::string("malformed XML in the store's ") + what + " answer");
  }
  return doc;
}

bool Named(const xmlNode* node, const char* name) {
  return node->type == XML_ELEMENT_NODE &&
         xmlStrcmp(node->name, reinterpret_cast<const xmlChar*>(name)) == 0;
}

// The direct children of `parent` named `name`, in order.
std::vector<const xmlNode*> Children(const xmlNode* parent, const char* name) {
  std::vector<const xmlNode*> out;
  for (const xmlNode* c = parent->children; c != nullptr; c = c->next) {
    if (Named(c, name)) out.push_back(c);
  }
  return out;
}

std::string Text(const xmlNode* node) {
  std::unique_ptr<xmlChar, CharFree> text(xmlNodeGetContent(node));
  return text == nullptr ? "" : reinterpret_cast<const char*>(text.get());
}

// The text of the first child named `name`, or "" when there is none.
std::string ChildText(const xmlNode* parent, const char* name) {
  const auto children = Children(parent, name);
  return children.empty() ? "" : Text(children.front());
}

Result<const xmlNode*> Root(const Doc& doc, const char* name, const char* what) {
  const xmlNode* root = xmlDocGetRootElement(doc.get());
  if (!Named(root, name)) {
    return Status::IOError(std::string("the store's ") + what + " answer is a <" +
                           reinterpret_cast<const char*>(root->name) + ">, not a <" + name + ">");
  }
  return root;
}

std::optional<uint64_t> ParseU64(std::string_view s) {
  uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

Result<S3ObjectInfo> ParseContents(const xmlNode* node) {
  S3ObjectInfo o;
  o.key = ChildText(node, "Key");
  o.etag = ChildText(node, "ETag");
  const std::string size = ChildText(node, "Size");
  const auto parsed_size = ParseU64(size);
  const auto mtime = ParseIso8601(ChildText(node, "LastModified"));
  if (o.key.empty() || !parsed_size || !mtime) {
    return Status::IOError(
        "the store's ListObjectsV2 answer has an entry without a key, size or "
        "LastModified (key '" +
        o.key + "', size '" + size + "')");
  }
  o.size = *parsed_size;
  o.mtime_ns = *mtime;
  return o;
}

}  // namespace

Result<S3ListPage> ParseListObjectsV2(std::string_view xml) {
  BFS_ASSIGN_OR_RETURN(Doc doc, ParseDoc(xml, "ListObjectsV2"));
  BFS_ASSIGN_OR_RETURN(const xmlNode* root, Root(doc, "ListBucketResult", "ListObjectsV2"));
  S3ListPage page;
  for (const xmlNode* c : Children(root, "Contents")) {
    BFS_ASSIGN_OR_RETURN(S3ObjectInfo o, ParseContents(c));
    page.objects.push_back(std::move(o));
  }
  for (const xmlNode* c : Children(root, "CommonPrefixes")) {
    page.common_prefixes.push_back(ChildText(c, "Prefix"));
  }
  page.truncated = ChildText(root, "IsTruncated") == "true";
  page.next_token = ChildText(root, "NextContinuationToken");
  if (page.truncated && page.next_token.empty()) {
    return Status::IOError(
        "the store's ListObjectsV2 answer is truncated without a "
        "NextContinuationToken");
  }
  return page;
}

Result<S3UploadsPage> ParseListMultipartUploads(std::string_view xml) {
  BFS_ASSIGN_OR_RETURN(Doc doc, ParseDoc(xml, "ListMultipartUploads"));
  BFS_ASSIGN_OR_RETURN(const xmlNode* root,
                       Root(doc, "ListMultipartUploadsResult", "ListMultipartUploads"));
  S3UploadsPage page;
  for (const xmlNode* c : Children(root, "Upload")) {
    S3Upload u;
    u.key = ChildText(c, "Key");
    u.upload_id = ChildText(c, "UploadId");
    u.initiated_ns = ParseIso8601(ChildText(c, "Initiated")).value_or(0);
    if (u.key.empty() || u.upload_id.empty()) {
      return Status::IOError(
          "the store's ListMultipartUploads answer has an upload without a "
          "key or UploadId");
    }
    page.uploads.push_back(std::move(u));
  }
  page.truncated = ChildText(root, "IsTruncated") == "true";
  page.next_key_marker = ChildText(root, "NextKeyMarker");
  page.next_upload_id_marker = ChildText(root, "NextUploadIdMarker");
  return page;
}

Result<std::string> ParseInitiateMultipartUpload(std::string_view xml) {
  BFS_ASSIGN_OR_RETURN(Doc doc, ParseDoc(xml, "CreateMultipartUpload"));
  BFS_ASSIGN_OR_RETURN(const xmlNode* root,
                       Root(doc, "InitiateMultipartUploadResult", "CreateMultipartUpload"));
  std::string id = ChildText(root, "UploadId");
  if (id.empty())
    return Status::IOError("the store's CreateMultipartUpload answer has no UploadId");
  return id;
}

Result<std::string> ParseCompleteMultipartUpload(std::string_view xml) {
  BFS_ASSIGN_OR_RETURN(Doc doc, ParseDoc(xml, "CompleteMultipartUpload"));
  BFS_ASSIGN_OR_RETURN(const xmlNode* root,
                       Root(doc, "CompleteMultipartUploadResult", "CompleteMultipartUpload"));
  return ChildText(root, "ETag");
}

Result<std::string> ParseCopyPartResult(std::string_view xml) {
  BFS_ASSIGN_OR_RETURN(Doc doc, ParseDoc(xml, "UploadPartCopy"));
  BFS_ASSIGN_OR_RETURN(const xmlNode* root, Root(doc, "CopyPartResult", "UploadPartCopy"));
  std::string etag = ChildText(root, "ETag");
  if (etag.empty()) return Status::Corruption("UploadPartCopy: the answer holds no ETag");
  return etag;
}

std::optional<S3ErrorBody> ParseS3Error(std::string_view xml) {
  if (xml.find("<Error") == std::string_view::npos) return std::nullopt;
  auto doc = ParseDoc(xml, "error");
  if (!doc.ok()) return std::nullopt;
  const xmlNode* root = xmlDocGetRootElement(doc->get());
  if (!Named(root, "Error")) return std::nullopt;
  return S3ErrorBody{ChildText(root, "Code"), ChildText(root, "Message")};
}

Result<std::string> CompleteMultipartUploadXml(const std::vector<std::string>& etags) {
  InitXml();
  std::unique_ptr<xmlBuffer, BufferFree> buffer(xmlBufferCreate());
  if (buffer == nullptr) return Status::IOError("cannot allocate an XML buffer");
  xmlTextWriter* raw = xmlNewTextWriterMemory(buffer.get(), 0);
  if (raw == nullptr) return Status::IOError("cannot allocate an XML writer");
  std::unique_ptr<xmlTextWriter, WriterFree> w(raw);
  const auto x = [](const char* s) { return reinterpret_cast<const xmlChar*>(s); };
  bool ok = xmlTextWriterStartDocument(w.get(), nullptr, "UTF-8", nullptr) >= 0 &&
            xmlTextWriterStartElementNS(w.get(), nullptr, x("CompleteMultipartUpload"),
                                        x("http://s3.amazonaws.com/doc/2006-03-01/")) >= 0;
  for (size_t i = 0; ok && i < etags.size(); ++i) {
    ok = xmlTextWriterStartElement(w.get(), x("Part")) >= 0 &&
         xmlTextWriterWriteElement(w.get(), x("PartNumber"), x(std::to_string(i + 1).c_str())) >=
             0 &&
         xmlTextWriterWriteElement(w.get(), x("ETag"), x(etags[i].c_str())) >= 0 &&
         xmlTextWriterEndElement(w.get()) >= 0;
  }
  ok = ok && xmlTextWriterEndDocument(w.get()) >= 0;
  w.reset();  // flushes into the buffer
  if (!ok) return Status::IOError("cannot write the CompleteMultipartUpload request");
  return std::string(reinterpret_cast<const char*>(xmlBufferContent(buffer.get())),
                     static_cast<size_t>(xmlBufferLength(buffer.get())));
}

std::optional<int64_t> ParseIso8601(std::string_view text) {
  struct tm tm = {};
  int consumed = 0;
  const std::string s(text);
  if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &consumed) != 6) {
    return std::nullopt;
  }
  int64_t nanos = 0;
  size_t i = static_cast<size_t>(consumed);
  if (i < s.size() && s[i] == '.') {
    int64_t scale = 100000000;
    for (++i; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i, scale /= 10) {
      nanos += (s[i] - '0') * scale;
    }
  }
  if (i >= s.size() || s[i] != 'Z') return std::nullopt;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<int64_t>(timegm(&tm)) * 1000000000 + nanos;
}

}  // namespace backupfs
