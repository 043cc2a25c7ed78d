#include "common/run_log.h"

#include <fcntl.h>
#include <syslog.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <utility>

namespace backupfs {

namespace {

const char* LevelName(int level) {
  static const char* const kNames[] = {"DEBUG", "INFO", "WARNING", "ERROR"};
  return kNames[level];
}

int SyslogPriority(int level) {
  static const int kPriorities[] = {LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR};
  return kPriorities[level];
}

std::string TimeStamp() {
  char buf[32];
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm local{};
  localtime_r(&ts.tv_sec, &local);
  size_t n = strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &local);
  snprintf(buf + n, sizeof buf - n, ".%03ld", ts.tv_nsec / 1000000);
  return buf;
}

void WriteAll(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // a log that cannot be written must not fail the backup
    done += static_cast<size_t>(n);
  }
}

}  // namespace

RunLog::RunLog(bool verbose, bool syslog, bool to_stderr, const char* ident,
               std::string line_prefix)
    : verbose_(verbose),
      syslog_(syslog),
      to_stderr_(to_stderr),
      ident_(ident),
      line_prefix_(std::move(line_prefix)) {
  // openlog keeps the pointer: the identity must outlive the log (a string literal does).
  if (syslog_) openlog(ident_, LOG_PID, LOG_USER);
}

RunLog::~RunLog() {
  if (syslog_) closelog();
}

Status RunLog::OpenFile(const std::string& path, bool append) {
  const int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (append ? 0 : O_EXCL);
  int fd = open(path.c_str(), flags, 0600);
  if (fd < 0 && errno == EEXIST) return Status::FailedPrecondition(path + " exists");
  if (fd < 0) return Status::FromErrno("cannot create the log file " + path, errno);
  std::lock_guard<std::mutex> lock(mu_);
  file_ = UniqueFd(fd);
  file_path_ = path;
  WriteAll(fd, early_);
  early_.clear();
  return Status::Ok();
}

void RunLog::SetBarActive(bool active) {
  std::lock_guard<std::mutex> lock(mu_);
  bar_active_ = active;
}

unsigned RunLog::warnings() const {
  std::lock_guard<std::mutex> lock(mu_);
  return warnings_;
}

void RunLog::Emit(Level level, const std::string& line) {
  const int l = static_cast<int>(level);
  const std::string text = TimeStamp() + " " + LevelName(l) + " " + line + "\n";
  std::lock_guard<std::mutex> lock(mu_);
  if (level == Level::kWarning) warnings_++;
  if (file_.valid()) {
    WriteAll(file_.get(), text);
  } else {
    early_ += text;
  }
  if (to_stderr_ && (level != Level::kDebug || verbose_)) {
    const std::string shown = line_prefix_.empty() ? text : line_prefix_ + text;
    WriteAll(STDERR_FILENO, bar_active_ ? "\r\033[K" + shown : shown);
  }
  if (syslog_ && level != Level::kDebug) {
    syslog(SyslogPriority(l), "%s%s", line_prefix_.c_str(), line.c_str());
  }
}

}  // namespace backupfs
