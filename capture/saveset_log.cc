#include "capture/saveset_log.h"

#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <optional>
#include <vector>

#include "stream/file.h"

namespace backupfs {

namespace {

// Runs within one second of each other get .2, .3, ... added, up to this many.
constexpr int kMaxSameSecond = 100;
// The temporary file goes up in pieces of this size: memory stays small whatever the log's.
constexpr size_t kUploadPiece = 1u << 20;

std::string Numbered(const std::string& base, int n) {
  return n == 1 ? base + ".log" : base + "." + std::to_string(n) + ".log";
}

}  // namespace

SavesetLog::~SavesetLog() {
  if (temp_dir_.empty() || tried_) return;
  if (Store().ok()) RemoveTemporary();
}

Status SavesetLog::Open(Storage& saveset, const std::string& base) {
  saveset_ = &saveset;
  if (std::optional<std::string> dir = saveset.LocalDir()) {
    // The file is created exclusively: a taken name is FailedPrecondition.
    Status opened = Status::FailedPrecondition("");
    for (int n = 1; opened.code() == StatusCode::kFailedPrecondition && n < kMaxSameSecond; n++) {
      name_ = Numbered(base, n);
      opened = log_.OpenFile(JoinName(*dir, name_));
    }
    return opened;
  }
  for (int n = 1; n < kMaxSameSecond; n++) {
    BFS_ASSIGN_OR_RETURN(std::optional<StoredObject> taken, saveset.Stat(Numbered(base, n)));
    if (!taken) return OpenTemporary(Numbered(base, n));
  }
  return Status::FailedPrecondition(saveset.Describe(Numbered(base, kMaxSameSecond - 1)) +
                                    " exists: too many runs within one second");
}

Status SavesetLog::OpenTemporary(const std::string& name) {
  std::error_code ec;
  std::filesystem::path tmp = std::filesystem::temp_directory_path(ec);
  if (ec) tmp = "/tmp";
  std::string dir = (tmp / "backupfs-capture-log.XXXXXX").string();
  if (::mkdtemp(dir.data()) == nullptr) {
    return Status::FromErrno("cannot create a temporary directory for the log in " + tmp.string(),
                             errno);
  }
  temp_dir_ = dir;
  temp_file_ = dir + "/" + name;
  name_ = name;
  return log_.OpenFile(temp_file_);
}

Status SavesetLog::Upload() {
  if (temp_dir_.empty() || tried_) return Status::Ok();
  tried_ = true;
  Status s = Store();
  if (!s.ok()) {
    return s.WithPrefix("the run's log was not stored (it is kept in " + temp_file_ + ")");
  }
  RemoveTemporary();
  return Status::Ok();
}

Status SavesetLog::Store() {
  BFS_ASSIGN_OR_RETURN(FileSource file, FileSource::Open(temp_file_));
  PutOptions put;
  put.mode = 0600;  // as the log's local file: it names disks and paths
  BFS_ASSIGN_OR_RETURN(std::unique_ptr<ObjectWriter> out, saveset_->Create(name_, put));
  std::vector<uint8_t> piece(kUploadPiece);
  for (uint64_t at = 0; at < file.size(); at += piece.size()) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(piece.size(), file.size() - at));
    BFS_RETURN_IF_ERROR(file.ReadAt(at, std::span(piece.data(), n)));
    BFS_RETURN_IF_ERROR(out->Append(std::span(piece.data(), n)));
  }
  return out->Commit();
}

void SavesetLog::RemoveTemporary() {
  std::error_code ec;
  std::filesystem::remove_all(temp_dir_, ec);
  temp_dir_.clear();
}

}  // namespace backupfs
