#include "stream/metadata.h"

namespace backupfs {
namespace {

using json = nlohmann::ordered_json;

Status KeyError(const std::string& file, uint64_t offset, const std::string& key,
                const std::string& problem) {
  return Status::Corruption(file + ": offset " + std::to_string(offset) + ": metadata key '" + key +
                            "' " + problem);
}

// Reads an optional key of type T into *out; a present key of the wrong type is an error.
template <typename T>
Status Optional(const json& j, const char* key, T* out, const std::string& file, uint64_t offset) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return Status::Ok();
  if constexpr (std::is_same_v<T, std::string>) {
    if (!it->is_string()) return KeyError(file, offset, key, "is not a string");
  } else if constexpr (std::is_same_v<T, bool>) {
    if (!it->is_boolean()) return KeyError(file, offset, key, "is not a boolean");
  } else {
    if (!it->is_number_unsigned()) {
      return KeyError(file, offset, key, "is not a non-negative integer");
    }
  }
  *out = it->get<T>();
  return Status::Ok();
}

Status Required(const json& j, const char* key, const std::string& file, uint64_t offset) {
  if (!j.contains(key) || j[key].is_null()) return KeyError(file, offset, key, "is missing");
  return Status::Ok();
}

Status DecodeCompression(const json& j, StreamMetadata* meta, const std::string& file,
                         uint64_t offset) {
  auto it = j.find("compressed");
  if (it == j.end() || it->is_null() || (it->is_boolean() && !it->get<bool>())) {
    return Status::Ok();
  }
  if (it->is_boolean()) {
    meta->compression_level = 0;
  } else if (it->is_number_integer() && it->get<int64_t>() >= -1000 && it->get<int64_t>() <= 1000) {
    meta->compression_level = static_cast<int>(it->get<int64_t>());
  } else {
    return KeyError(file, offset, "compressed", "is neither false nor an lz4 level");
  }
  BFS_RETURN_IF_ERROR(Optional(j, "compressionMethod", &meta->compression_method, file, offset));
  if (meta->compression_method != "lz4") {
    return KeyError(file, offset, "compressionMethod",
                    "names an unsupported method '" + meta->compression_method + "'");
  }
  return Status::Ok();
}

}  // namespace

std::string EncodeMetadata(const StreamMetadata& meta) {
  json j;
  j["virtualSize"] = meta.virtual_size;
  j["dataSize"] = meta.data_size;
  j["date"] = meta.date;
  j["diskName"] = meta.disk_name;
  j["diskFormat"] = meta.disk_format;
  j["checkpointName"] = meta.checkpoint_name;
  if (meta.compression_level) {
    j["compressed"] = *meta.compression_level;
  } else {
    j["compressed"] = false;
  }
  j["compressionMethod"] = meta.compression_method;
  j["parentCheckpoint"] = meta.parent_checkpoint;
  j["incremental"] = meta.incremental;
  j["streamVersion"] = meta.stream_version;
  return j.dump(4);
}

Result<StreamMetadata> DecodeMetadata(std::string_view text, const std::string& file,
                                      uint64_t offset) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return Status::Corruption(file + ": offset " + std::to_string(offset) +
                              ": metadata is not valid JSON");
  }
  if (!j.is_object()) {
    return Status::Corruption(file + ": offset " + std::to_string(offset) +
                              ": metadata is not a JSON object");
  }
  StreamMetadata meta;
  for (const char* key : {"virtualSize", "dataSize", "diskName"}) {
    BFS_RETURN_IF_ERROR(Required(j, key, file, offset));
  }
  BFS_RETURN_IF_ERROR(Optional(j, "virtualSize", &meta.virtual_size, file, offset));
  BFS_RETURN_IF_ERROR(Optional(j, "dataSize", &meta.data_size, file, offset));
  BFS_RETURN_IF_ERROR(Optional(j, "date", &meta.date, file, offset));
  BFS_RETURN_IF_ERROR(Optional(j, "diskName", &meta.disk_name, file, offset));
  BFS_RETURN_IF_ERROR(Optional(j, "diskFormat", &meta.disk_format, file, offset));
  BFS_RETURN_IF_ERROR(Optional(j, "checkpointName", &meta.checkpoint_name, file, offset));
  BFS_RETURN_IF_ERROR(Optional(j, "parentCheckpoint", &meta.parent_checkpoint, file, offset));
  BFS_RETURN_IF_ERROR(Optional(j, "incremental", &meta.incremental, file, offset));
  if (meta.disk_name.empty()) return KeyError(file, offset, "diskName", "is empty");
  if (meta.virtual_size > static_cast<uint64_t>(INT64_MAX)) {
    return KeyError(file, offset, "virtualSize", "is larger than any file can be");
  }

  uint64_t version = 0;
  if (j.contains("streamVersion")) {
    BFS_RETURN_IF_ERROR(Optional(j, "streamVersion", &version, file, offset));
  } else if (j.contains("stream-version")) {
    BFS_RETURN_IF_ERROR(Optional(j, "stream-version", &version, file, offset));
  } else {
    version = 1;
  }
  if (version != 1 && version != 2) {
    return KeyError(file, offset, "streamVersion",
                    "is " + std::to_string(version) + "; this program reads versions 1 and 2");
  }
  meta.stream_version = static_cast<int>(version);
  if (version == 2) BFS_RETURN_IF_ERROR(DecodeCompression(j, &meta, file, offset));
  if (meta.data_size > meta.virtual_size) {
    return KeyError(file, offset, "dataSize", "is larger than virtualSize");
  }
  meta.raw = std::move(j);
  return meta;
}

struct timespec ParseMetadataDate(const std::string& iso) {
  std::tm tm = {};
  const char* rest = strptime(iso.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (rest == nullptr) return {};
  tm.tm_isdst = -1;
  struct timespec ts = {mktime(&tm), 0};
  if (*rest == '.') {
    double fraction = std::strtod(rest, nullptr);  // ".123456"
    if (fraction >= 0 && fraction < 1) ts.tv_nsec = static_cast<long>(fraction * 1e9);
  }
  return ts;
}

}  // namespace backupfs
