#include "common/qcow_options.h"

#include <nlohmann/json.hpp>

namespace backupfs {
namespace {

using nlohmann::json;

// data[key] as text when it has the expected JSON type, else "".
std::string Field(const json& data, const char* key) {
  auto it = data.find(key);
  if (it == data.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number_unsigned()) return std::to_string(it->get<uint64_t>());
  if (it->is_boolean()) return it->get<bool>() ? "on" : "off";
  return "";
}

}  // namespace

Result<QcowCreateOptions> ParseQcowCreateOptions(std::string_view text, const std::string& what) {
  json info = json::parse(text, nullptr, false);
  if (info.is_discarded() || !info.is_object()) {
    return Status::InvalidArgument(what + ": not a JSON object (qemu-img info --output json)");
  }
  QcowCreateOptions out;
  if (std::string v = Field(info, "cluster-size"); !v.empty()) {
    out.options.push_back("cluster_size=" + v);
  }
  const json data = info.value("format-specific", json::object()).value("data", json::object());
  if (!data.is_object()) return out;
  const std::pair<const char*, const char*> keys[] = {{"compat", "compat"},
                                                      {"compression-type", "compression_type"},
                                                      {"refcount-bits", "refcount_bits"}};
  for (const auto& [key, option] : keys) {
    if (std::string v = Field(data, key); !v.empty()) out.options.push_back(option + ("=" + v));
  }
  // Only the non-default settings: compat=0.10 images know neither.
  if (Field(data, "lazy-refcounts") == "on") out.options.push_back("lazy_refcounts=on");
  if (Field(data, "extended-l2") == "on") out.options.push_back("extended_l2=on");
  if (data.contains("data-file")) {
    out.notes.push_back(what + ": the image kept its data in an external file (" +
                        Field(data, "data-file") + "); the restored image holds its data itself");
  }
  return out;
}

}  // namespace backupfs
