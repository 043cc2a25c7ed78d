#include "capture/backup_job.h"

#include <libvirt/virterror.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "capture/libvirt.h"
#include "stream/file.h"

namespace backupfs {

Result<std::unique_ptr<WorkDir>> WorkDir::Create(const std::string& parent) {
  std::string templ = parent + "/" + kWorkDirPrefix + "XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) {
    return Status::FromErrno("cannot create a work directory in " + parent, errno);
  }
  std::unique_ptr<WorkDir> dir(new WorkDir(buf.data()));
  if (chmod(dir->path().c_str(), 0777) != 0) {
    return Status::FromErrno("chmod 0777 " + dir->path(), errno);
  }
  const std::string pid = std::to_string(getpid()) + "\n";
  BFS_RETURN_IF_ERROR(WriteFileAtomically(
      dir->path() + "/owner.pid",
      std::span(reinterpret_cast<const uint8_t*>(pid.data()), pid.size()), 0644, false));
  return dir;
}

WorkDir::~WorkDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
  if (ec)
    std::fprintf(stderr, "warning: cannot remove %s: %s\n", path_.c_str(), ec.message().c_str());
}

namespace {

// The socket='...' of the running backup job's XML; "" when the domain runs no backup job.
Result<std::string> RunningJobSocket(virDomainPtr dom, const std::string& domain) {
  char* xml = virDomainBackupGetXMLDesc(dom, 0);
  if (xml == nullptr) {
    virErrorPtr err = virGetLastError();
    if (err != nullptr && err->code == VIR_ERR_NO_DOMAIN_BACKUP) return std::string();
    return LibvirtError("domain " + domain + ": cannot read its backup job");
  }
  const std::string text(xml);
  std::free(xml);
  for (const char* key : {"socket='", "socket=\""}) {
    size_t at = text.find(key);
    if (at == std::string::npos) continue;
    at += std::strlen(key);
    size_t end = text.find(key[std::strlen(key) - 1], at);
    if (end != std::string::npos) return text.substr(at, end - at);
  }
  return std::string("?");  // a job, but not on a unix socket: not ours
}

// True when `dir` is one of our work directories and the process that made it is gone.
bool OwnerGone(const std::filesystem::path& dir) {
  if (!dir.filename().string().starts_with(kWorkDirPrefix)) return false;
  std::ifstream in(dir / "owner.pid");
  pid_t pid = 0;
  if (!(in >> pid) || pid <= 0) return true;
  return kill(pid, 0) != 0 && errno == ESRCH;
}

// virDomainAbortJob returns once libvirt has asked QEMU to cancel the job; libvirt stops the
// NBD server and drops the job later, when QEMU's block jobs have concluded. Waits for that.
// Our NBD connections must stay open until then (see NbdHandlePark): measured here, closing
// them right after virDomainAbortJob returned crashed a domain whose disks run in iothreads.
Status WaitForBackupEnd(virDomainPtr dom, const std::string& domain) {
  using namespace std::chrono_literals;
  const auto deadline = std::chrono::steady_clock::now() + 120s;
  while (true) {
    BFS_ASSIGN_OR_RETURN(std::string socket, RunningJobSocket(dom, domain));
    if (socket.empty()) return Status::Ok();
    if (std::chrono::steady_clock::now() > deadline) {
      return Status::IOError("domain " + domain + ": the backup job was aborted but is still " +
                             "listed after 120 s");
    }
    std::this_thread::sleep_for(5ms);
  }
}

}  // namespace

Result<bool> AbortStaleJob(virDomainPtr dom, const std::string& domain) {
  BFS_ASSIGN_OR_RETURN(std::string socket, RunningJobSocket(dom, domain));
  if (socket.empty()) return false;
  const std::filesystem::path dir = std::filesystem::path(socket).parent_path();
  if (!OwnerGone(dir)) {
    return Status::InvalidArgument("domain " + domain + " already runs a backup job (NBD socket " +
                                   socket + "): another backup is in progress");
  }
  if (virDomainAbortJob(dom) < 0) {
    return LibvirtError("domain " + domain + ": cannot abort the backup job left by a killed run");
  }
  BFS_RETURN_IF_ERROR(WaitForBackupEnd(dom, domain));
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return true;
}

Result<bool> AbortAnyBackupJob(virDomainPtr dom, const std::string& domain) {
  BFS_ASSIGN_OR_RETURN(std::string socket, RunningJobSocket(dom, domain));
  if (socket.empty()) return false;
  if (virDomainAbortJob(dom) < 0) {
    return LibvirtError("domain " + domain + ": cannot abort its backup job");
  }
  BFS_RETURN_IF_ERROR(WaitForBackupEnd(dom, domain));
  return true;
}

Result<std::unique_ptr<BackupJob>> BackupJob::Begin(virDomainPtr dom, const std::string& domain,
                                                    const std::string& backup_xml,
                                                    const std::string& checkpoint_xml,
                                                    const std::string& checkpoint) {
  const char* cxml = checkpoint_xml.empty() ? nullptr : checkpoint_xml.c_str();
  if (virDomainBackupBegin(dom, backup_xml.c_str(), cxml, 0) < 0) {
    Status s = LibvirtError("domain " + domain + ": cannot start the backup job");
    // A bitmap the incremental job needs is gone or broken: the chain cannot continue.
    virErrorPtr e = virGetLastError();
    if (e != nullptr && e->code == VIR_ERR_CHECKPOINT_INCONSISTENT) {
      return Status::FailedPrecondition(s.message());
    }
    return s;
  }
  return std::unique_ptr<BackupJob>(
      new BackupJob(dom, domain, checkpoint_xml.empty() ? "" : checkpoint));
}

Status BackupJob::End() {
  if (!active_) return Status::Ok();
  active_ = false;
  if (virDomainAbortJob(dom_) < 0) {
    return LibvirtError("domain " + domain_ + ": cannot end the backup job");
  }
  return WaitForBackupEnd(dom_, domain_);
}

BackupJob::~BackupJob() {
  Status s = End();
  if (!s.ok()) std::fprintf(stderr, "warning: %s\n", s.message().c_str());
  if (checkpoint_.empty()) return;
  s = DeleteCheckpoint(dom_, domain_, checkpoint_);
  if (!s.ok()) std::fprintf(stderr, "warning: %s\n", s.message().c_str());
}

}  // namespace backupfs
