// Errors as values: every fallible library call returns a Status or a Result<T>.
// The message carries the context (file, byte offset, disk) that a user needs to act on it;
// tools print it once and map the code to an exit status, the FUSE layer to an errno.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace backupfs {

enum class StatusCode {
  kOk = 0,
  kCorruption,          // bytes on disk do not follow the format or fail a checksum
  kIOError,             // the operating system refused a read, write or open
  kInvalidArgument,     // the caller asked for something impossible
  kNotFound,            // a file or key that must exist does not
  kStale,               // a derived file (index) no longer matches what it describes
  kFailedPrecondition,  // the system is not in the state the operation needs
  kUnavailable,         // a service (guest agent, server) does not answer
  kCancelled,           // stopped on request (a signal)
};

class [[nodiscard]] Status {
 public:
  Status() = default;
  static Status Ok() { return Status(); }
  static Status Corruption(std::string msg) { return {StatusCode::kCorruption, std::move(msg)}; }
  static Status IOError(std::string msg) { return {StatusCode::kIOError, std::move(msg)}; }
  static Status InvalidArgument(std::string msg) {
    return {StatusCode::kInvalidArgument, std::move(msg)};
  }
  static Status NotFound(std::string msg) { return {StatusCode::kNotFound, std::move(msg)}; }
  static Status Stale(std::string msg) { return {StatusCode::kStale, std::move(msg)}; }
  static Status FailedPrecondition(std::string msg) {
    return {StatusCode::kFailedPrecondition, std::move(msg)};
  }
  static Status Unavailable(std::string msg) { return {StatusCode::kUnavailable, std::move(msg)}; }
  static Status Cancelled(std::string msg) { return {StatusCode::kCancelled, std::move(msg)}; }
  // An IOError whose message ends with strerror(err).
  static Status FromErrno(const std::string& what, int err);

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "corruption: <message>", for logs and tool output.
  std::string ToString() const;
  // The same status with "prefix: " put in front of its message (adds the file name, say).
  Status WithPrefix(const std::string& prefix) const;
  // The same status with `suffix` appended to its message.
  Status WithSuffix(const std::string& suffix) const;

 private:
  Status(StatusCode code, std::string msg) : code_(code), message_(std::move(msg)) {}
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// A value or the Status that explains why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) { assert(!std::get<Status>(v_).ok()); }  // NOLINT

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace backupfs

// Returns from the enclosing function when a Status-returning expression fails.
#define BFS_RETURN_IF_ERROR(expr)              \
  do {                                         \
    ::backupfs::Status bfs_status_ = (expr);   \
    if (!bfs_status_.ok()) return bfs_status_; \
  } while (0)

#define BFS_CONCAT_INNER(a, b) a##b
#define BFS_CONCAT(a, b) BFS_CONCAT_INNER(a, b)
// `BFS_ASSIGN_OR_RETURN(auto x, Foo());` declares x from a Result or returns its Status.
#define BFS_ASSIGN_OR_RETURN(lhs, expr) \
  BFS_ASSIGN_OR_RETURN_IMPL(BFS_CONCAT(bfs_result_, __LINE__), lhs, expr)
#define BFS_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return tmp.status();             \
  lhs = std::move(tmp).value()
