#include "stream/trailer.h"

#include <charconv>
#include <nlohmann/json.hpp>

namespace backupfs {
namespace {

Status Bad(const std::string& file, uint64_t offset, size_t index, const std::string& what) {
  return Status::Corruption(file + ": offset " + std::to_string(offset) +
                            ": compression trailer entry " + std::to_string(index) + " " + what);
}

bool ParseDecimal(const std::string& text, uint64_t* value) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *value);
  return ec == std::errc() && end == text.data() + text.size() && !text.empty();
}

Result<TrailerEntry> DecodeEntry(const nlohmann::json& item, const std::string& file,
                                 uint64_t offset, size_t index) {
  TrailerEntry entry;
  if (item.is_number_unsigned()) {
    entry.chunk_sizes.push_back(item.get<uint64_t>());
    return entry;
  }
  if (!item.is_object() || item.size() != 1) {
    return Bad(file, offset, index, "is neither a size nor a {\"TOTAL\": [sizes]} object");
  }
  entry.split = true;
  uint64_t total = 0;
  if (!ParseDecimal(item.begin().key(), &total)) {
    return Bad(file, offset, index, "has a key that is not a decimal size");
  }
  const auto& list = item.begin().value();
  if (!list.is_array() || list.empty()) {
    return Bad(file, offset, index, "has no list of chunk sizes");
  }
  for (const auto& size : list) {
    if (!size.is_number_unsigned()) return Bad(file, offset, index, "has a bad chunk size");
    entry.chunk_sizes.push_back(size.get<uint64_t>());
  }
  if (entry.total() == UINT64_MAX) return Bad(file, offset, index, "has chunk sizes that overflow");
  if (entry.total() != total) {
    return Bad(file, offset, index,
               "totals " + std::to_string(total) + " but its chunks sum to " +
                   std::to_string(entry.total()));
  }
  return entry;
}

}  // namespace

uint64_t TrailerEntry::total() const {
  uint64_t sum = 0;
  for (uint64_t s : chunk_sizes) {
    if (__builtin_add_overflow(sum, s, &sum)) return UINT64_MAX;
  }
  return sum;
}

std::string EncodeTrailer(const std::vector<TrailerEntry>& entries) {
  std::string out = "[";
  for (size_t i = 0; i < entries.size(); ++i) {
    if (i > 0) out += ", ";
    const TrailerEntry& e = entries[i];
    if (!e.split) {
      out += std::to_string(e.chunk_sizes.empty() ? 0 : e.chunk_sizes[0]);
      continue;
    }
    out += "{\"" + std::to_string(e.total()) + "\": [";
    for (size_t c = 0; c < e.chunk_sizes.size(); ++c) {
      if (c > 0) out += ", ";
      out += std::to_string(e.chunk_sizes[c]);
    }
    out += "]}";
  }
  return out + "]";
}

Result<std::vector<TrailerEntry>> DecodeTrailer(std::string_view text, const std::string& file,
                                                uint64_t offset) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_array()) {
    return Status::Corruption(file + ": offset " + std::to_string(offset) +
                              ": compression trailer is not a JSON list");
  }
  std::vector<TrailerEntry> entries;
  entries.reserve(j.size());
  for (size_t i = 0; i < j.size(); ++i) {
    BFS_ASSIGN_OR_RETURN(TrailerEntry e, DecodeEntry(j[i], file, offset, i));
    entries.push_back(std::move(e));
  }
  return entries;
}

}  // namespace backupfs
