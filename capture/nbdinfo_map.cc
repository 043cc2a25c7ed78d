#include "capture/nbdinfo_map.h"

#include <nlohmann/json.hpp>

#include "common/subprocess.h"

namespace backupfs {

namespace {

bool Unreserved(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~' || c == '/';
}

std::string PercentEncode(const std::string& s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : s) {
    if (Unreserved(c)) {
      out += c;
    } else {
      const auto u = static_cast<unsigned char>(c);
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

}  // namespace

std::string NbdUnixUri(const std::string& export_name, const std::string& socket) {
  return "nbd+unix:///" + PercentEncode(export_name) + "?socket=" + PercentEncode(socket);
}

std::string NbdUri(const std::string& export_name, const NbdEndpoint& endpoint) {
  if (!endpoint.tcp()) return NbdUnixUri(export_name, endpoint.socket);
  const std::string host = endpoint.host.find(':') != std::string::npos
                               ? "[" + endpoint.host + "]"  // IPv6
                               : PercentEncode(endpoint.host);
  std::string uri = std::string(endpoint.tls ? "nbds" : "nbd") + "://" + host + ":" +
                    std::to_string(endpoint.port) + "/" + PercentEncode(export_name);
  if (endpoint.tls) uri += "?tls-certificates=" + PercentEncode(endpoint.tls_dir);
  return uri;
}

Status ParseNbdinfoMap(std::string_view json, const std::string& context, uint64_t size,
                       BlockStatusMaps& maps) {
  nlohmann::json j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  const std::string what = "nbdinfo --map=" + context;
  if (!j.is_array()) return Status::Corruption(what + ": output is not a JSON list");
  uint64_t next = 0;
  for (const auto& e : j) {
    if (!e.is_object() || !e.contains("offset") || !e.contains("length") || !e.contains("type") ||
        !e["offset"].is_number_unsigned() || !e["length"].is_number_unsigned() ||
        !e["type"].is_number_unsigned()) {
      return Status::Corruption(what + ": an entry lacks offset, length or type: " + e.dump());
    }
    const uint64_t offset = e["offset"].get<uint64_t>(), length = e["length"].get<uint64_t>();
    const uint32_t type = e["type"].get<uint32_t>();
    if (offset != next || length > size || offset > size - length) {
      return Status::Corruption(what + ": extent at " + std::to_string(offset) +
                                " does not follow " + std::to_string(next) + " within " +
                                std::to_string(size));
    }
    next = offset + length;
    if (context == kBaseAllocation) {
      AppendExtent(maps.allocation, {offset, length, AllocationKind(type)});
    } else if ((type & kNbdStateDirty) != 0) {
      AppendRange(maps.dirty, {offset, length});
    }
  }
  if (next != size) {
    return Status::Corruption(what + ": the map ends at " + std::to_string(next) +
                              ", the export at " + std::to_string(size));
  }
  return Status::Ok();
}

Result<BlockStatusMaps> QueryWithNbdinfo(const NbdConnectOptions& options, uint64_t size) {
  BlockStatusMaps maps;
  const std::string uri = NbdUri(options.export_name, options.endpoint);
  std::vector<std::string> contexts;
  if (options.allocation) contexts.push_back(kBaseAllocation);
  if (!options.dirty_context.empty()) contexts.push_back(options.dirty_context);
  for (const std::string& ctx : contexts) {
    BFS_ASSIGN_OR_RETURN(std::string out, RunCapture({"nbdinfo", "--json", "--map=" + ctx, uri}));
    BFS_RETURN_IF_ERROR(ParseNbdinfoMap(out, ctx, size, maps));
  }
  return maps;
}

}  // namespace backupfs
