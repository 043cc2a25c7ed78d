#include "stream/storage.h"

#include <algorithm>

#include "stream/xxh3.h"

namespace backupfs {

std::string JoinName(std::string_view dir, std::string_view name) {
  if (dir.empty()) return std::string(name);
  std::string out(dir);
  if (out.back() != '/') out += '/';
  out += name;
  return out;
}

StoreStamp StampOfListing(std::string identity, const std::vector<StoredObject>& listed) {
  StoreStamp out;
  if (listed.empty()) return out;
  std::vector<const StoredObject*> sorted;
  sorted.reserve(listed.size());
  for (const StoredObject& o : listed) sorted.push_back(&o);
  std::sort(sorted.begin(), sorted.end(),
            [](const StoredObject* a, const StoredObject* b) { return a->name < b->name; });
  std::string all;  // name, version and size of each, NUL-separated: unambiguous
  for (const StoredObject* o : sorted) {
    all.append(o->name).push_back('\0');
    all.append(o->version).push_back('\0');
    all.append(std::to_string(o->size)).push_back('\0');
    const int64_t newest = out.mtime.tv_sec * int64_t{1000000000} + out.mtime.tv_nsec;
    if (o->mtime_ns > newest) {
      out.mtime = {static_cast<time_t>(o->mtime_ns / 1000000000),
                   static_cast<long>(o->mtime_ns % 1000000000)};
    }
  }
  out.exists = true;
  out.identity = std::move(identity);
  out.token =
      std::to_string(listed.size()) + ":" + std::to_string(XXH3_64bits(all.data(), all.size()));
  return out;
}

Result<std::string> Storage::ReadAll(std::string_view name, uint64_t max_size) const {
  BFS_ASSIGN_OR_RETURN(std::unique_ptr<StoredFile> file, Open(name));
  if (file->size() > max_size) {
    return Status::Corruption(Describe(name) + ": " + std::to_string(file->size()) +
                              " bytes, more than the " + std::to_string(max_size) +
                              " it could need");
  }
  std::string out(file->size(), '\0');
  BFS_RETURN_IF_ERROR(
      file->ReadAt(0, std::span(reinterpret_cast<uint8_t*>(out.data()), out.size())));
  return out;
}

Status Storage::Put(std::string_view name, std::span<const uint8_t> bytes,
                    const PutOptions& options) {
  BFS_ASSIGN_OR_RETURN(std::unique_ptr<ObjectWriter> writer, Create(name, options));
  BFS_RETURN_IF_ERROR(writer->Append(bytes));
  return writer->Commit();
}

}  // namespace backupfs
