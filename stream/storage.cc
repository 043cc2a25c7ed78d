#include "stream/storage.h"

namespace backupfs {

std::string JoinName(std::string_view dir, std::string_view name) {
  if (dir.empty()) return std::string(name);
  std::string out(dir);
  if (out.back() != '/') out += '/';
  out += name;
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
