// For tests: a real Ceph RADOS Gateway brought up by scripts/rgw.sh in a scratch directory on
// a port block of the test's own, and torn down with everything in it.
#pragma once

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "storage/open_storage.h"

namespace backupfs::testing {

// Runs argv (no shell) and returns its exit status, or -1 when it did not exit normally.
inline int RunProgram(const std::vector<std::string>& argv) {
  const pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    // rgw.sh prints its export lines on stdout; the test reads them from DIR/env instead.
    if (freopen("/dev/null", "w", stdout) == nullptr) _exit(127);
    execv(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Runs argv (no shell, PATH searched) and returns its exit status (-1 when it did not exit
// normally), with its stdout in *out.
inline int RunCapture(const std::vector<std::string>& argv, std::string* out) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  const pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(fds[1]);
  char buf[4096];
  for (ssize_t n; (n = read(fds[0], buf, sizeof(buf))) > 0;) out->append(buf, n);
  close(fds[0]);
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

inline bool HaveProgram(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
  for (size_t start = 0; start <= dirs.size();) {
    const size_t end = std::min(dirs.find(':', start), dirs.size());
    if (access((dirs.substr(start, end - start) + "/" + name).c_str(), X_OK) == 0) return true;
    start = end + 1;
  }
  return false;
}

class TestGateway {
 public:
  TestGateway(std::string script, int port) : script_(std::move(script)), port_(port) {
    char dir[] = "/tmp/bfs-rgw-XXXXXX";
    if (mkdtemp(dir) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = dir;
  }
  ~TestGateway() { RunProgram({script_, "down", dir_}); }

  bool Up() {
    if (RunProgram({script_, "up", dir_, std::to_string(port_)}) != 0) return false;
    ReadEnv();
    return !env_["AWS_ENDPOINT_URL"].empty();
  }
  bool StopGateway() { return RunProgram({script_, "stop-gateway", dir_}) == 0; }
  bool StartGateway() { return RunProgram({script_, "start-gateway", dir_}) == 0; }

  // The store's endpoint and keys, as rgw.sh wrote them.
  StoreOptions Options() {
    StoreOptions o;
    o.endpoint = env_["AWS_ENDPOINT_URL"];
    o.access_key = env_["AWS_ACCESS_KEY_ID"];
    o.secret_key = env_["AWS_SECRET_ACCESS_KEY"];
    o.region = env_["AWS_DEFAULT_REGION"];
    return o;
  }
  const std::string& dir() const { return dir_; }

 private:
  void ReadEnv() {
    std::ifstream in(dir_ + "/env");
    std::string line;
    while (std::getline(in, line)) {
      if (!line.starts_with("export ")) continue;
      const size_t eq = line.find('=');
      if (eq == std::string::npos) continue;
      std::string value = line.substr(eq + 1);
      if (value.size() >= 2 && (value[0] == '\'' || value[0] == '"')) {
        value = value.substr(1, value.size() - 2);
      }
      env_[line.substr(7, eq - 7)] = value;
    }
  }

  const std::string script_;
  const int port_;
  std::string dir_;
  std::map<std::string, std::string> env_;
};

// tests/integration/s3_fault_proxy.py in front of a gateway: cuts connections, answers 5xx,
// stalls requests, on command. Stopped on destruction.
class FaultProxy {
 public:
  FaultProxy(std::string script, int upstream) : script_(std::move(script)) {
    int fds[2];
    if (pipe(fds) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fds[1], 1);
      close(fds[0]);
      close(fds[1]);
      const std::string up = std::to_string(upstream);
      execlp("python3", "python3", script_.c_str(), "--upstream", up.c_str(),
             static_cast<char*>(nullptr));
      _exit(127);
    }
    close(fds[1]);
    // Its first line says where it listens: {"listen": P, "control": C, "upstream": U}.
    std::string line;
    pollfd p{fds[0], POLLIN, 0};
    char c;
    while (line.find('\n') == std::string::npos && poll(&p, 1, 10'000) == 1 &&
           read(fds[0], &c, 1) == 1) {
      line += c;
    }
    close(fds[0]);
    port_ = Field(line, "\"listen\": ");
    control_ = Field(line, "\"control\": ");
  }
  ~FaultProxy() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
  }

  bool ok() const { return port_ > 0 && control_ > 0; }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }
  // `fail status=503 count=2 match=GET`, `cut dir=up bytes=1000 match=partNumber=`, `clear`...
  // Returns the proxy's JSON answer, or "" when it refused.
  std::string Command(std::vector<std::string> words) {
    std::vector<std::string> argv = {"python3", script_, "ctl", std::to_string(control_)};
    argv.insert(argv.end(), words.begin(), words.end());
    std::string out;
    return RunCapture(argv, &out) == 0 ? out : "";
  }

 private:
  static int Field(const std::string& line, const std::string& name) {
    const size_t at = line.find(name);
    return at == std::string::npos ? 0 : std::atoi(line.c_str() + at + name.size());
  }

  const std::string script_;
  pid_t pid_ = -1;
  int port_ = 0;
  int control_ = 0;
};

}  // namespace backupfs::testing
