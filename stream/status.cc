#include "stream/status.h"

#include <cstring>

namespace backupfs {

Status Status::FromErrno(const std::string& what, int err) {
  return IOError(what + ": " + std::strerror(err));
}

std::string Status::ToString() const {
  switch (code_) {
    case StatusCode::kOk:
      return "ok";
    case StatusCode::kCorruption:
      return "corruption: " + message_;
    case StatusCode::kIOError:
      return "I/O error: " + message_;
    case StatusCode::kInvalidArgument:
      return "invalid argument: " + message_;
    case StatusCode::kNotFound:
      return "not found: " + message_;
    case StatusCode::kStale:
      return "stale: " + message_;
    case StatusCode::kFailedPrecondition:
      return "failed precondition: " + message_;
    case StatusCode::kUnavailable:
      return "unavailable: " + message_;
    case StatusCode::kCancelled:
      return "cancelled: " + message_;
  }
  return message_;
}

Status Status::WithPrefix(const std::string& prefix) const {
  if (ok()) return *this;
  return Status(code_, prefix + ": " + message_);
}

Status Status::WithSuffix(const std::string& suffix) const {
  if (ok()) return *this;
  return Status(code_, message_ + suffix);
}

}  // namespace backupfs
