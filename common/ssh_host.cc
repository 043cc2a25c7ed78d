// A hypervisor reached over ssh (libssh 0.10): commands over exec channels, files over SFTP.
//
// Threading: a libssh session is not thread-safe. The session, its SFTP subsystem and the
// channels of spawned programs live in one Connection shared by the Host and its
// HostProcesses (so that a process may outlive the Host object); every use holds
// Connection::mu. A spawned program's channel is only read when its owner asks (Exited()
// polls it without blocking, Stop() reads it to its end); meanwhile libssh buffers what it
// writes, which for qemu-nbd is a few stderr lines.
//
// Keepalive: sshd may drop a client that leaves its ClientAlive probes unanswered, and
// libssh answers them only while someone calls into the session. A capture leaves the Host
// alone for as long as the NBD copy takes, so a thread of the Connection calls in every
// second (ssh_send_keepalive, which also processes what arrived), or the remote qemu-nbd
// would go with the connection.
#include <fcntl.h>
#include <libssh/libssh.h>
#include <libssh/server.h>  // ssh_send_keepalive, which clients may use too
#include <libssh/sftp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>

#include "common/host.h"
#include "common/host_internal.h"
#include "common/thread_annotations.h"
#include "stream/file.h"

namespace backupfs {

namespace {

using Clock = std::chrono::steady_clock;

constexpr long kConnectTimeoutSeconds = 10;
constexpr auto kKeepaliveInterval = std::chrono::seconds(1);
constexpr int kPollMs = 100;
// The remote watchdog (kSpawnScript) sends SIGKILL 30 s after SIGTERM.
constexpr auto kStopTimeout = std::chrono::seconds(35);
constexpr auto kDestructorWait = std::chrono::seconds(5);
constexpr size_t kStderrTail = 8192;
constexpr uint32_t kSftpChunk = 64 * 1024;
constexpr int kSftpReadsInFlight = 16;

// Runs "$@" in the background with stdin and stdout on /dev/null and stderr on the channel,
// and a watchdog that ends it (SIGTERM, SIGKILL 30 s later) once the channel's stdin reaches
// its end: when we send EOF (Stop), and when sshd closes the channel because the connection
// dropped (our process killed, the network cut, as soon as sshd notices). The watchdog reads
// the channel through fd 3: a background job of a non-interactive sh would otherwise get
// /dev/null as its stdin. Exits with the program's status.
constexpr char kSpawnScript[] = R"(exec 3<&0
"$@" 3<&- </dev/null >/dev/null &
child=$!
{
  cat <&3
  kill -TERM "$child"
  i=0
  while [ "$i" -lt 300 ] && kill -0 "$child"; do sleep 0.1; i=$((i + 1)); done
  kill -0 "$child" && kill -KILL "$child"
} >/dev/null 2>&1 &
watchdog=$!
exec 3<&-
wait "$child"
status=$?
kill "$watchdog" 2>/dev/null
exit "$status")";

struct ChannelFree {
  void operator()(ssh_channel c) const { ssh_channel_free(c); }
};
using UniqueChannel = std::unique_ptr<ssh_channel_struct, ChannelFree>;
struct SftpFileClose {
  void operator()(sftp_file f) const { sftp_close(f); }
};
using UniqueSftpFile = std::unique_ptr<sftp_file_struct, SftpFileClose>;
struct SftpAttributesFree {
  void operator()(sftp_attributes a) const { sftp_attributes_free(a); }
};
using UniqueSftpAttributes = std::unique_ptr<sftp_attributes_struct, SftpAttributesFree>;
struct KeyFree {
  void operator()(ssh_key k) const { ssh_key_free(k); }
};
using UniqueKey = std::unique_ptr<ssh_key_struct, KeyFree>;

// What a Host and the programs it spawned share; see the threading note at the top.
class Connection {
 public:
  Connection(ssh_session session, const SshOptions& o)
      : name("host " + o.host),
        address(o.host),
        where(o.host + ":" + std::to_string(o.port)),
        session_(session) {}
  ~Connection() {
    StopKeepalive();
    MutexLock lock(mu);
    if (sftp_ != nullptr) sftp_free(sftp_);
    ssh_disconnect(session_);
    ssh_free(session_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Once connected: see "Keepalive" at the top.
  void StartKeepalive() {
    keepalive_ = std::thread([this] { KeepaliveLoop(); });
  }

  Mutex mu;
  ssh_session session() REQUIRES(mu) { return session_; }
  std::string Error() REQUIRES(mu) { return ssh_get_error(session_); }
  // The SFTP subsystem, started on first use.
  Result<sftp_session> Sftp() REQUIRES(mu);

  const std::string name;     // "host 127.0.0.2"
  const std::string address;  // "127.0.0.2"
  const std::string where;    // "127.0.0.2:2222"

 private:
  void KeepaliveLoop() EXCLUDES(mu);
  void StopKeepalive();

  ssh_session session_ GUARDED_BY(mu);
  sftp_session sftp_ GUARDED_BY(mu) = nullptr;
  std::thread keepalive_;
  std::mutex stop_mu_;  // guards stopping_ (std::mutex: the condition variable needs one)
  std::condition_variable stop_cv_;
  bool stopping_ = false;
};

void Connection::KeepaliveLoop() {
  std::unique_lock<std::mutex> stop_lock(stop_mu_);
  while (!stop_cv_.wait_for(stop_lock, kKeepaliveInterval, [this] { return stopping_; })) {
    stop_lock.unlock();
    {
      MutexLock lock(mu);
      if (ssh_is_connected(session_)) ssh_send_keepalive(session_);
    }
    stop_lock.lock();
  }
}

void Connection::StopKeepalive() {
  if (!keepalive_.joinable()) return;
  {
    std::lock_guard<std::mutex> stop_lock(stop_mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  keepalive_.join();
}

Result<sftp_session> Connection::Sftp() {
  if (sftp_ != nullptr) return sftp_;
  sftp_session s = sftp_new(session_);
  if (s == nullptr) {
    return Status::IOError("cannot open an SFTP channel to " + where + ": " + Error());
  }
  if (sftp_init(s) != SSH_OK) {
    Status st = Status::IOError("cannot start SFTP on " + where + ": " + Error() +
                                " (is sshd's sftp subsystem enabled?)");
    sftp_free(s);
    return st;
  }
  sftp_ = s;
  return sftp_;
}

std::string SftpErrorText(int code) {
  switch (code) {
    case SSH_FX_EOF:
      return "end of file";
    case SSH_FX_NO_SUCH_FILE:
      return "No such file or directory";
    case SSH_FX_PERMISSION_DENIED:
      return "Permission denied";
    case SSH_FX_FAILURE:
      return "the server reported a failure";
    case SSH_FX_BAD_MESSAGE:
      return "bad message";
    case SSH_FX_NO_CONNECTION:
    case SSH_FX_CONNECTION_LOST:
      return "the connection is lost";
    case SSH_FX_OP_UNSUPPORTED:
      return "operation not supported by the server";
    case SSH_FX_FILE_ALREADY_EXISTS:
      return "File exists";
    default:
      return "SFTP error " + std::to_string(code);
  }
}

// "cannot open /x on host 127.0.0.2: Permission denied".
Status SftpError(Connection& c, sftp_session sftp, const std::string& what, const std::string& path)
    REQUIRES(c.mu) {
  const int code = sftp_get_error(sftp);
  const std::string text = code == SSH_FX_OK ? c.Error() : SftpErrorText(code);
  return Status::IOError(what + " " + path + " on " + c.name + ": " + text);
}

// Whatever the channel holds now, without waiting: stdout into `out` (unless null), stderr
// into `err`; Ok at the end of the channel too.
Status ReadAvailable(Connection& c, ssh_channel ch, std::string* out, std::string* err)
    REQUIRES(c.mu) {
  char buf[65536];
  for (int is_stderr = 0; is_stderr < 2; is_stderr++) {
    std::string* sink = is_stderr ? err : out;
    for (;;) {
      const int n = ssh_channel_read_nonblocking(ch, buf, sizeof buf, is_stderr);
      if (n == SSH_ERROR)
        return Status::IOError("lost the ssh connection to " + c.where + ": " + c.Error());
      if (n <= 0) break;
      if (sink != nullptr) sink->append(buf, static_cast<size_t>(n));
    }
  }
  return Status::Ok();
}

bool ChannelEnded(ssh_channel ch) { return ssh_channel_is_eof(ch) || ssh_channel_is_closed(ch); }

// Reads stdout and stderr until the remote end closes them; `deadline` bounds the wait.
// Returns false when the deadline passed first.
Result<bool> ReadToEnd(Connection& c, ssh_channel ch, std::string* out, std::string* err,
                       std::optional<Clock::time_point> deadline) REQUIRES(c.mu) {
  char buf[65536];
  for (;;) {
    // Waits for stdout; stderr that arrives meanwhile is buffered by libssh and read below.
    const int n = ssh_channel_read_timeout(ch, buf, sizeof buf, 0, kPollMs);
    if (n == SSH_ERROR) {
      return Status::IOError("lost the ssh connection to " + c.where + ": " + c.Error());
    }
    if (n > 0 && out != nullptr) out->append(buf, static_cast<size_t>(n));
    BFS_RETURN_IF_ERROR(ReadAvailable(c, ch, out, err));
    if (n == 0 && ChannelEnded(ch)) return true;
    if (deadline && Clock::now() > *deadline) return false;
  }
}

void KeepTail(std::string& s) {
  if (s.size() > kStderrTail) s.erase(0, s.size() - kStderrTail);
}

Result<UniqueChannel> OpenExec(Connection& c, const std::string& command) REQUIRES(c.mu) {
  UniqueChannel ch(ssh_channel_new(c.session()));
  if (ch == nullptr || ssh_channel_open_session(ch.get()) != SSH_OK ||
      ssh_channel_request_exec(ch.get(), command.c_str()) != SSH_OK) {
    return Status::IOError("cannot run a command on " + c.where + " over ssh: " + c.Error());
  }
  return ch;
}

// The exit status the channel reports; -1 when the program was killed by a signal (libssh
// 0.10 reports no signal) or the channel closed without one.
int ExitStatus(ssh_channel ch) { return ssh_channel_get_exit_status(ch); }

std::string HowEnded(int code, const std::string& err) {
  const std::string how = code < 0 ? std::string("was killed or lost its ssh channel")
                                   : "exited with " + std::to_string(code);
  const std::string last = LastLineOf(err);
  return last.empty() ? how : how + ": " + last;
}

class SshProcess : public HostProcess {
 public:
  SshProcess(std::shared_ptr<Connection> c, UniqueChannel ch, std::string program)
      : c_(std::move(c)), ch_(std::move(ch)), program_(std::move(program)) {}

  ~SshProcess() override {
    MutexLock lock(c_->mu);
    if (!ended_) {
      ssh_channel_send_eof(ch_.get());
      (void)ReadToEnd(*c_, ch_.get(), nullptr, &err_, Clock::now() + kDestructorWait);
    }
    ch_.reset();
  }

  std::optional<std::string> Exited() override {
    MutexLock lock(c_->mu);
    if (ended_) return how_;
    Status st = ReadAvailable(*c_, ch_.get(), nullptr, &err_);
    KeepTail(err_);
    if (!st.ok()) {
      End(st.message());
    } else if (ChannelEnded(ch_.get())) {
      End(HowEnded(ExitStatus(ch_.get()), err_));
    }
    if (ended_) return how_;
    return std::nullopt;
  }

  Status Stop(const std::string& what) override {
    MutexLock lock(c_->mu);
    const std::string who = what + " on " + c_->name;
    if (ended_) return Status::IOError(who + " had already ended: " + how_);
    // The watchdog of kSpawnScript sends SIGTERM when our side of stdin ends.
    if (ssh_channel_send_eof(ch_.get()) != SSH_OK) {
      End("lost the ssh connection to " + c_->where + ": " + c_->Error());
      return Status::IOError(who + ": " + how_);
    }
    Result<bool> ended = ReadToEnd(*c_, ch_.get(), nullptr, &err_, Clock::now() + kStopTimeout);
    KeepTail(err_);
    if (!ended.ok()) {
      End(ended.status().message());
      return Status::IOError(who + ": " + how_);
    }
    if (!*ended) {
      End("did not end");
      return Status::IOError(who + " did not end within 35 s of being asked to");
    }
    const int code = ExitStatus(ch_.get());
    End(HowEnded(code, err_));
    if (code == 0) return Status::Ok();
    return Status::IOError(who + " " + how_);
  }

 private:
  void End(std::string how) REQUIRES(c_->mu) {
    ended_ = true;
    how_ = std::move(how);
  }

  std::shared_ptr<Connection> c_;
  UniqueChannel ch_;  // used under c_->mu
  std::string program_;
  bool ended_ = false;
  std::string how_;
  std::string err_;  // the tail of its stderr
};

class SshHost : public Host {
 public:
  explicit SshHost(std::shared_ptr<Connection> c) : c_(std::move(c)) {}

  bool remote() const override { return true; }
  const std::string& name() const override { return c_->name; }
  const std::string& address() const override { return c_->address; }

  Result<CommandResult> Run(const std::vector<std::string>& argv) override {
    if (argv.empty()) return Status::InvalidArgument("Host::Run: empty argument vector");
    MutexLock lock(c_->mu);
    BFS_ASSIGN_OR_RETURN(UniqueChannel ch, OpenExec(*c_, ShellCommand(argv)));
    ssh_channel_send_eof(ch.get());  // a program that reads stdin sees its end
    CommandResult result;
    Result<bool> ended = ReadToEnd(*c_, ch.get(), &result.out, &result.err, std::nullopt);
    if (!ended.ok()) return ended.status().WithPrefix("running " + argv[0]);
    const int code = ExitStatus(ch.get());
    // As a shell reports a program it could not follow to its end.
    result.exit_code = code < 0 ? 255 : code;
    return result;
  }

  Result<std::unique_ptr<HostProcess>> Spawn(const std::vector<std::string>& argv) override {
    if (argv.empty()) return Status::InvalidArgument("Host::Spawn: empty argument vector");
    std::vector<std::string> words = {"sh", "-c", kSpawnScript, "sh"};
    words.insert(words.end(), argv.begin(), argv.end());
    MutexLock lock(c_->mu);
    BFS_ASSIGN_OR_RETURN(UniqueChannel ch, OpenExec(*c_, ShellCommand(words)));
    return std::unique_ptr<HostProcess>(new SshProcess(c_, std::move(ch), argv[0]));
  }

  Result<std::string> ReadFile(const std::string& path) override {
    std::string contents;
    BFS_RETURN_IF_ERROR(ReadRemote(path, [&](const char* data, size_t n) {
      contents.append(data, n);
      return Status::Ok();
    }));
    return contents;
  }

  Status FetchFile(const std::string& path, const std::string& local_path) override {
    BFS_ASSIGN_OR_RETURN(UniqueFd out, OpenFile(local_path, O_WRONLY | O_CREAT | O_TRUNC, 0600));
    BFS_RETURN_IF_ERROR(ReadRemote(path, [&](const char* data, size_t n) {
      return WriteAll(out.get(), std::span(reinterpret_cast<const uint8_t*>(data), n), local_path);
    }));
    return FsyncFile(out.get(), local_path);
  }

  Status PutFile(const std::string& local_path, const std::string& path, mode_t mode) override {
    BFS_ASSIGN_OR_RETURN(UniqueFd in, OpenFile(local_path, O_RDONLY));
    std::vector<char> buf(kSftpChunk);
    return WriteRemote(path, mode, [&](std::string_view* chunk) -> Status {
      ssize_t n;
      do {
        n = read(in.get(), buf.data(), buf.size());
      } while (n < 0 && errno == EINTR);
      if (n < 0) return Status::FromErrno("cannot read " + local_path, errno);
      *chunk = std::string_view(buf.data(), static_cast<size_t>(n));
      return Status::Ok();
    });
  }

  Status WriteFile(const std::string& path, const std::string& contents, mode_t mode) override {
    size_t offset = 0;
    return WriteRemote(path, mode, [&](std::string_view* chunk) {
      *chunk = std::string_view(contents).substr(offset, kSftpChunk);
      offset += chunk->size();
      return Status::Ok();
    });
  }

  Result<bool> Exists(const std::string& path) override {
    MutexLock lock(c_->mu);
    BFS_ASSIGN_OR_RETURN(sftp_session sftp, c_->Sftp());
    UniqueSftpAttributes attrs(sftp_stat(sftp, path.c_str()));
    if (attrs != nullptr) return true;
    if (sftp_get_error(sftp) == SSH_FX_NO_SUCH_FILE) return false;
    return SftpError(*c_, sftp, "cannot tell whether this exists:", path);
  }

  Status MakeDirs(const std::string& path, mode_t mode) override {
    MutexLock lock(c_->mu);
    BFS_ASSIGN_OR_RETURN(sftp_session sftp, c_->Sftp());
    for (size_t slash = path.find('/', 1);; slash = path.find('/', slash + 1)) {
      const std::string prefix = path.substr(0, slash);
      if (!prefix.empty() && sftp_mkdir(sftp, prefix.c_str(), mode) != SSH_OK) {
        // Most often it exists already (OpenSSH says only "failure"): look.
        const Status failed = SftpError(*c_, sftp, "cannot create directory", prefix);
        UniqueSftpAttributes attrs(sftp_stat(sftp, prefix.c_str()));
        if (attrs == nullptr) return failed;
        if (attrs->type != SSH_FILEXFER_TYPE_DIRECTORY) {
          return Status::IOError(prefix + " on " + c_->name + " exists and is not a directory");
        }
      }
      if (slash == std::string::npos) return Status::Ok();
    }
  }

  // libssh 0.10 has no posix-rename@openssh.com, and OpenSSH's plain SFTP rename refuses to
  // replace a file: mv -T, which is rename(2) within a filesystem.
  Status Rename(const std::string& from, const std::string& to) override {
    Result<std::string> moved = RunChecked({"mv", "-f", "-T", "--", from, to});
    if (!moved.ok()) return moved.status().WithPrefix("cannot rename " + from + " to " + to);
    return Status::Ok();
  }

  Status Remove(const std::string& path) override {
    MutexLock lock(c_->mu);
    BFS_ASSIGN_OR_RETURN(sftp_session sftp, c_->Sftp());
    if (sftp_unlink(sftp, path.c_str()) == SSH_OK) return Status::Ok();
    const Status failed = SftpError(*c_, sftp, "cannot remove", path);
    UniqueSftpAttributes attrs(sftp_lstat(sftp, path.c_str()));
    if (attrs == nullptr || attrs->type != SSH_FILEXFER_TYPE_DIRECTORY) return failed;
    if (sftp_rmdir(sftp, path.c_str()) == SSH_OK) return Status::Ok();
    return SftpError(*c_, sftp, "cannot remove directory", path);
  }

  Status Sync(const std::string& path) override {
    {
      MutexLock lock(c_->mu);
      BFS_ASSIGN_OR_RETURN(sftp_session sftp, c_->Sftp());
      if (sftp_extension_supported(sftp, "fsync@openssh.com", "1")) {
        // OpenSSH opens directories too, so their fsync makes renames in them durable.
        UniqueSftpFile f(sftp_open(sftp, path.c_str(), O_RDONLY, 0));
        if (f == nullptr) return SftpError(*c_, sftp, "cannot open", path);
        if (sftp_fsync(f.get()) != SSH_OK) return SftpError(*c_, sftp, "cannot fsync", path);
        return Status::Ok();
      }
    }
    Result<std::string> synced = RunChecked({"sync", "--", path});
    return synced.ok() ? Status::Ok() : synced.status();
  }

 private:
  // Calls `sink` with the file's bytes in order, with kSftpReadsInFlight reads in flight.
  Status ReadRemote(const std::string& path,
                    const std::function<Status(const char*, size_t)>& sink) {
    MutexLock lock(c_->mu);
    BFS_ASSIGN_OR_RETURN(sftp_session sftp, c_->Sftp());
    UniqueSftpFile f(sftp_open(sftp, path.c_str(), O_RDONLY, 0));
    if (f == nullptr) return SftpError(*c_, sftp, "cannot open", path);
    std::vector<char> buf(kSftpChunk);
    uint64_t offset = 0;  // of the next byte `sink` gets
    for (;;) {
      // A batch of reads from `offset`; the server answers each in full but at the end of
      // the file, so a short answer ends the batch and the next one starts where it stopped.
      sftp_seek64(f.get(), offset);
      std::vector<int> ids;
      for (int i = 0; i < kSftpReadsInFlight; i++) {
        const int id = sftp_async_read_begin(f.get(), kSftpChunk);
        if (id < 0) return SftpError(*c_, sftp, "cannot read", path);
        ids.push_back(id);
      }
      bool short_read = false;
      Status failed;
      for (int id : ids) {
        const int n = sftp_async_read(f.get(), buf.data(), kSftpChunk, id);
        if (short_read || !failed.ok()) continue;  // collects the answers that remain
        if (n < 0) {
          failed = SftpError(*c_, sftp, "cannot read", path);
          continue;
        }
        if (n > 0) failed = sink(buf.data(), static_cast<size_t>(n));
        offset += static_cast<uint64_t>(n);
        if (n == 0) return failed;  // the end of the file
        short_read = static_cast<uint32_t>(n) < kSftpChunk;
      }
      BFS_RETURN_IF_ERROR(failed);
    }
  }

  // Writes path + ".partial" with `mode` from `next` (an empty chunk ends it), fsyncs it,
  // renames it over `path` and fsyncs the directory.
  Status WriteRemote(const std::string& path, mode_t mode,
                     const std::function<Status(std::string_view*)>& next) {
    const std::string partial = path + ".partial";
    Status st = WritePartial(partial, mode, next);
    if (st.ok()) st = Rename(partial, path);
    if (!st.ok()) {
      // Best effort: the error at hand is the one to report, not this one.
      MutexLock lock(c_->mu);
      Result<sftp_session> sftp = c_->Sftp();
      if (sftp.ok()) sftp_unlink(*sftp, partial.c_str());
      return st;
    }
    const size_t slash = path.rfind('/');
    return Sync(slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash));
  }

  Status WritePartial(const std::string& partial, mode_t mode,
                      const std::function<Status(std::string_view*)>& next) {
    MutexLock lock(c_->mu);
    BFS_ASSIGN_OR_RETURN(sftp_session sftp, c_->Sftp());
    UniqueSftpFile f(sftp_open(sftp, partial.c_str(), O_WRONLY | O_CREAT | O_TRUNC, mode));
    if (f == nullptr) return SftpError(*c_, sftp, "cannot create", partial);
    // The server's umask applied to the open's mode.
    if (sftp_chmod(sftp, partial.c_str(), mode) != SSH_OK) {
      return SftpError(*c_, sftp, "cannot chmod", partial);
    }
    for (;;) {
      std::string_view chunk;
      BFS_RETURN_IF_ERROR(next(&chunk));
      if (chunk.empty()) break;
      while (!chunk.empty()) {
        const ssize_t n = sftp_write(f.get(), chunk.data(), chunk.size());
        if (n <= 0) return SftpError(*c_, sftp, "cannot write", partial);
        chunk.remove_prefix(static_cast<size_t>(n));
      }
    }
    if (sftp_extension_supported(sftp, "fsync@openssh.com", "1") && sftp_fsync(f.get()) != SSH_OK) {
      return SftpError(*c_, sftp, "cannot fsync", partial);
    }
    if (sftp_close(f.release()) != SSH_OK) return SftpError(*c_, sftp, "cannot close", partial);
    return Status::Ok();
  }

  std::shared_ptr<Connection> c_;
};

std::string DefaultKnownHosts() {
  const char* home = getenv("HOME");
  if (home == nullptr || *home == '\0') {
    const passwd* pw = getpwuid(getuid());
    home = pw != nullptr ? pw->pw_dir : "~";
  }
  return std::string(home) + "/.ssh/known_hosts";
}

// "SHA256:..." of the key the server offered.
std::string ServerFingerprint(ssh_session s) {
  ssh_key raw = nullptr;
  if (ssh_get_server_publickey(s, &raw) != SSH_OK) return "(unknown)";
  UniqueKey key(raw);
  unsigned char* hash = nullptr;
  size_t len = 0;
  if (ssh_get_publickey_hash(key.get(), SSH_PUBLICKEY_HASH_SHA256, &hash, &len) != 0) {
    return "(unknown)";
  }
  char* text = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, len);
  ssh_clean_pubkey_hash(&hash);
  if (text == nullptr) return "(unknown)";
  std::string out = text;
  ssh_string_free_char(text);
  return out;
}

Status VerifyHostKey(ssh_session s, const SshOptions& o, const std::string& where) {
  if (!o.verify_host_key) return Status::Ok();
  const std::string file = o.known_hosts.empty() ? DefaultKnownHosts() : o.known_hosts;
  const std::string entry = o.port == 22 ? o.host : "[" + o.host + "]:" + std::to_string(o.port);
  switch (ssh_session_is_known_server(s)) {
    case SSH_KNOWN_HOSTS_OK:
      return Status::Ok();
    case SSH_KNOWN_HOSTS_CHANGED:
    case SSH_KNOWN_HOSTS_OTHER:
      return Status::FailedPrecondition(
          "host key of " + where + " does not match " + file +
          " (possible man-in-the-middle): the server offers " + ServerFingerprint(s) +
          "; if the host's key changed on purpose, remove the old entry (ssh-keygen -R '" + entry +
          "' -f " + file + ") and add the new one");
    case SSH_KNOWN_HOSTS_UNKNOWN:
    case SSH_KNOWN_HOSTS_NOT_FOUND:
      return Status::FailedPrecondition(
          "host key of " + where + " is not in " + file + ": the server offers " +
          ServerFingerprint(s) + "; add it (ssh-keyscan -p " + std::to_string(o.port) + " " +
          o.host + " >> " + file +
          ", after checking the fingerprint) or give known_hosts= in the URI");
    case SSH_KNOWN_HOSTS_ERROR:
      break;
  }
  return Status::IOError("cannot check the host key of " + where + " against " + file + ": " +
                         ssh_get_error(s));
}

std::string SessionUser(ssh_session s, const SshOptions& o) {
  if (!o.user.empty()) return o.user;
  char* user = nullptr;
  if (ssh_options_get(s, SSH_OPTIONS_USER, &user) != SSH_OK || user == nullptr) return "?";
  std::string out = user;
  ssh_string_free_char(user);
  return out;
}

Status Authenticate(ssh_session s, const SshOptions& o, const std::string& where) {
  int rc;
  std::string key_desc;
  if (!o.private_key.empty()) {
    ssh_key raw = nullptr;
    if (ssh_pki_import_privkey_file(o.private_key.c_str(), nullptr, nullptr, nullptr, &raw) !=
        SSH_OK) {
      return Status::InvalidArgument(
          "cannot read the ssh private key " + o.private_key +
          " (missing, unreadable, not a private key, or protected by a passphrase: leave the key "
          "out to use the ssh agent)");
    }
    UniqueKey key(raw);
    rc = ssh_userauth_publickey(s, nullptr, key.get());
    key_desc = "key " + o.private_key;
  } else {
    rc = ssh_userauth_publickey_auto(s, nullptr, nullptr);
    key_desc = "the ssh agent's keys and ~/.ssh/id_*";
  }
  if (rc == SSH_AUTH_SUCCESS) return Status::Ok();
  if (rc == SSH_AUTH_ERROR) {
    return Status::IOError("ssh authentication on " + where + " failed: " + ssh_get_error(s));
  }
  const std::string user = SessionUser(s, o);
  return Status::FailedPrecondition(
      where + " refused user " + user + " with " + key_desc + ": add the public key to " + user +
      "'s ~/.ssh/authorized_keys on " + o.host +
      ", or name another key (--ssh-private-key, or keyfile= in the URI)");
}

Status SetOptions(ssh_session s, const SshOptions& o) {
  int port = static_cast<int>(o.port);
  long timeout = kConnectTimeoutSeconds;
  // Without it, Nagle's algorithm holds the tail of each SFTP request until the server's
  // delayed ACK: about 40 ms per round trip.
  int nodelay = 1;
  if (ssh_options_set(s, SSH_OPTIONS_HOST, o.host.c_str()) != SSH_OK ||
      ssh_options_set(s, SSH_OPTIONS_PORT, &port) != SSH_OK ||
      ssh_options_set(s, SSH_OPTIONS_TIMEOUT, &timeout) != SSH_OK ||
      ssh_options_set(s, SSH_OPTIONS_NODELAY, &nodelay) != SSH_OK ||
      (!o.user.empty() && ssh_options_set(s, SSH_OPTIONS_USER, o.user.c_str()) != SSH_OK) ||
      (!o.known_hosts.empty() &&
       ssh_options_set(s, SSH_OPTIONS_KNOWNHOSTS, o.known_hosts.c_str()) != SSH_OK)) {
    return Status::InvalidArgument("bad ssh options for " + o.host + ": " + ssh_get_error(s));
  }
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<Host>> ConnectSsh(const SshOptions& o) {
  if (o.host.empty()) return Status::InvalidArgument("ConnectSsh: no host given");
  const std::string where = o.host + ":" + std::to_string(o.port);
  ssh_session s = ssh_new();
  if (s == nullptr) return Status::IOError("cannot create an ssh session for " + where);
  auto c = std::make_shared<Connection>(s, o);
  MutexLock lock(c->mu);
  BFS_RETURN_IF_ERROR(SetOptions(s, o));
  if (ssh_connect(s) != SSH_OK) {
    return Status::Unavailable("cannot connect to " + where + " over ssh: " + ssh_get_error(s) +
                               "; check the host, the ssh port (--ssh-port or the URI's) and "
                               "that sshd runs there");
  }
  BFS_RETURN_IF_ERROR(VerifyHostKey(s, o, where));
  BFS_RETURN_IF_ERROR(Authenticate(s, o, where));
  c->StartKeepalive();
  return std::unique_ptr<Host>(new SshHost(std::move(c)));
}

}  // namespace backupfs
