#include "common/qcow_options.h"

#include <nlohmann/json.hpp>

namespace backupfs {
namespace {

using nlohmann::json;

// A member of the expected JSON type as option text, else "" (it is then left out).
std::string Number(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_unsigned() ? std::to_string(it->get<uint64_t>()) : "";
}
std::string Text(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}
bool Flag(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

}  // namespace

Result<QcowCreateOptions> ParseQcowCreateOptions(std::string_view text, const std::string& what) {
  json info = json::parse(text, nullptr, false);
  if (info.is_discarded() || !info.is_object()) {
    return Status::InvalidArgument(what + ": not a JSON object (qemu-img info --output json)");
  }
  QcowCreateOptions out;
  if (std::string v = Number(info, "cluster-size"); !v.empty()) {
    out.options.push_back("cluster_size=" + v);
  }
  // Any member may be missing or of another type in a hand-edited or foreign file.
  auto fs = info.find("format-specific");
  if (fs == info.end() || !fs->is_object()) return out;
  auto found = fs->find("data");
  if (found == fs->end() || !found->is_object()) return out;
  const json& data = *found;
  if (std::string v = Text(data, "compat"); !v.empty()) out.options.push_back("compat=" + v);
  if (std::string v = Text(data, "compression-type"); !v.empty()) {
    out.options.push_back("compression_type=" + v);
  }
  if (std::string v = Number(data, "refcount-bits"); !v.empty()) {
    out.options.push_back("refcount_bits=" + v);
  }
  // Only the non-default settings: compat=0.10 images know neither.
  if (Flag(data, "lazy-refcounts")) out.options.push_back("lazy_refcounts=on");
  if (Flag(data, "extended-l2")) out.options.push_back("extended_l2=on");
  if (data.contains("data-file")) {
    out.notes.push_back(what + ": the image kept its data in an external file (" +
                        Text(data, "data-file") + "); the restored image holds its data itself");
  }
  return out;
}

}  // namespace backupfs
