#include "capture/backup_job.h"

#include <libvirt/virterror.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <thread>
#include <vector>

#include "capture/libvirt.h"
#include "common/domain_xml.h"
#include "stream/file.h"

namespace backupfs {

namespace {

// This machine's id (/etc/machine-id), "" when it has none.
std::string MachineId() {
  Result<std::string> id = ReadWholeFile("/etc/machine-id");
  if (!id.ok()) return "";
  std::string s = *id;
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

std::string WorkDirOwner(const Host& host) {
  const std::string pid = std::to_string(getpid());
  return host.remote() ? pid + "@" + MachineId() : pid;
}

// One command on the host, not three (mktemp, chmod, a file write): over ssh each command
// costs a session, 0.3 s measured on a loaded machine here. The parent and the owner reach the
// script as its arguments, never as part of its text.
Result<std::unique_ptr<WorkDir>> WorkDir::Create(Host& host, const std::string& parent) {
  static constexpr char kScript[] =
      "d=$(mktemp -d \"$1/$2XXXXXX\") && chmod 0777 \"$d\" && "
      "printf '%s\\n' \"$3\" >\"$d/owner.pid\" && printf '%s\\n' \"$d\"";
  BFS_ASSIGN_OR_RETURN(std::string made, host.RunChecked({"sh", "-c", kScript, "sh", parent,
                                                          kWorkDirPrefix, WorkDirOwner(host)}));
  while (!made.empty() && made.back() == '\n') made.pop_back();
  if (made.empty()) {
    return Status::IOError("cannot create a work directory in " + parent + " on " + host.name());
  }
  return std::unique_ptr<WorkDir>(new WorkDir(host, made));
}

WorkDir::~WorkDir() {
  Result<std::string> removed = host_.RunChecked({"rm", "-rf", "--", path_});
  if (!removed.ok()) {
    std::fprintf(stderr, "warning: cannot remove %s on %s: %s\n", path_.c_str(),
                 host_.name().c_str(), removed.status().message().c_str());
  }
}

namespace {

// The running backup job; nullopt when the domain runs none (or does not run).
Result<std::optional<BackupJobInfo>> RunningJob(virDomainPtr dom, const std::string& domain) {
  BFS_ASSIGN_OR_RETURN(bool active, DomainIsActive(dom, domain));
  if (!active) return std::optional<BackupJobInfo>();  // stopped: no job
  char* xml = virDomainBackupGetXMLDesc(dom, 0);
  if (xml == nullptr) {
    if (LastErrorIs(VIR_ERR_NO_DOMAIN_BACKUP)) return std::optional<BackupJobInfo>();
    return LibvirtError("domain " + domain + ": cannot read its backup job");
  }
  const std::string text(xml);
  std::free(xml);
  BFS_ASSIGN_OR_RETURN(BackupJobInfo job,
                       ParseBackupJobXml(text, "domain " + domain + ": its backup job's XML"));
  return std::optional<BackupJobInfo>(std::move(job));
}

// True when the process that made our work directory `dir` on `host` is gone: a run of this
// machine (no "@MACHINE-ID", or ours) whose pid no longer runs. A directory without a readable
// owner is a killed run's too (it dies between mktemp and writing owner.pid).
bool OwnerGone(Host& host, const std::filesystem::path& dir) {
  Result<std::string> owner = host.ReadFile((dir / "owner.pid").string());
  if (!owner.ok()) return true;
  const std::string text = *owner;
  const size_t at = text.find('@');
  if (at != std::string::npos) {
    std::string machine = text.substr(at + 1);
    while (!machine.empty() && machine.back() == '\n') machine.pop_back();
    if (machine != MachineId()) return false;  // another backup host's run: not ours to judge
  }
  pid_t pid = 0;
  try {
    pid = static_cast<pid_t>(std::stol(text.substr(0, at)));
  } catch (const std::exception&) {
    return true;
  }
  if (pid <= 0) return true;
  return kill(pid, 0) != 0 && errno == ESRCH;
}

// The work directory of ours that a job uses: its socket's (the default) or its scratch files'
// (always, -f SOCKET included); "" when the job is another tool's.
std::filesystem::path OurWorkDir(const BackupJobInfo& job) {
  std::vector<std::string> paths = job.scratch_files;
  paths.push_back(job.socket);
  for (const std::string& p : paths) {
    const std::filesystem::path dir = std::filesystem::path(p).parent_path();
    if (dir.filename().string().starts_with(kWorkDirPrefix)) return dir;
  }
  return {};
}

// Whether two listings name the same job: a job of another tool (or run) may start as soon as
// ours is gone.
bool SameJob(const BackupJobInfo& a, const BackupJobInfo& b) {
  return a.socket == b.socket && a.scratch_files == b.scratch_files;
}

// virDomainAbortJob returns once libvirt has asked QEMU to cancel the job; libvirt stops the
// NBD server and drops the job later, when QEMU's block jobs have concluded. Waits until
// `ours` is no longer listed (no job, another job, or the domain gone). Our NBD connections
// must stay open until then (see NbdHandlePark): measured here, closing them right after
// virDomainAbortJob returned crashed a domain whose disks run in iothreads. A failed listing
// is retried until the deadline (60 s, under systemd's default stop timeout of 90 s).
Status WaitForBackupEnd(virDomainPtr dom, const std::string& domain, const BackupJobInfo& ours) {
  using namespace std::chrono_literals;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  Status last = Status::Ok();
  while (std::chrono::steady_clock::now() < deadline) {
    Result<std::optional<BackupJobInfo>> job = RunningJob(dom, domain);
    if (job.ok() && (!*job || !SameJob(**job, ours))) return Status::Ok();
    if (!job.ok()) last = job.status();
    std::this_thread::sleep_for(5ms);
  }
  return Status::IOError("domain " + domain + ": the backup job was aborted but is still " +
                         "listed after 60 s" + (last.ok() ? "" : " (" + last.message() + ")"));
}

}  // namespace

Result<bool> AbortStaleJob(Host& host, virDomainPtr dom, const std::string& domain) {
  BFS_ASSIGN_OR_RETURN(std::optional<BackupJobInfo> job, RunningJob(dom, domain));
  if (!job) return false;
  const std::filesystem::path dir = OurWorkDir(*job);
  if (dir.empty() || !OwnerGone(host, dir)) {
    const std::string where = !job->socket.empty() ? "NBD socket " + job->socket
                              : !dir.empty()       ? "work directory " + dir.string()
                                                   : "started by another tool";
    return Status::InvalidArgument("domain " + domain + " already runs a backup job (" + where +
                                   "): another backup is in progress");
  }
  if (virDomainAbortJob(dom) < 0) {
    return LibvirtError("domain " + domain + ": cannot abort the backup job left by a killed run");
  }
  BFS_RETURN_IF_ERROR(WaitForBackupEnd(dom, domain, *job));
  Result<std::string> removed = host.RunChecked({"rm", "-rf", "--", dir.string()});
  if (!removed.ok()) return removed.status();
  return true;
}

Result<bool> AbortAnyBackupJob(virDomainPtr dom, const std::string& domain) {
  BFS_ASSIGN_OR_RETURN(std::optional<BackupJobInfo> job, RunningJob(dom, domain));
  if (!job) return false;
  if (virDomainAbortJob(dom) < 0) {
    return LibvirtError("domain " + domain + ": cannot abort its backup job");
  }
  BFS_RETURN_IF_ERROR(WaitForBackupEnd(dom, domain, *job));
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
    if (LastErrorIs(VIR_ERR_CHECKPOINT_INCONSISTENT))
      return Status::FailedPrecondition(s.message());
    return s;
  }
  return std::unique_ptr<BackupJob>(
      new BackupJob(dom, domain, checkpoint_xml.empty() ? "" : checkpoint));
}

// The job is known by its listing, read before it is aborted. When that read or the abort
// fails, the job stays active: the destructor tries again before the parked NBD connections
// close.
Status BackupJob::End() {
  if (!active_) return Status::Ok();
  Result<std::optional<BackupJobInfo>> listed = RunningJob(dom_, domain_);
  if (!listed.ok()) return listed.status();
  if (!*listed) {  // gone already (the domain stopped, say)
    active_ = false;
    return Status::Ok();
  }
  if (virDomainAbortJob(dom_) < 0) {
    return LibvirtError("domain " + domain_ + ": cannot end the backup job");
  }
  active_ = false;
  return WaitForBackupEnd(dom_, domain_, **listed);
}

BackupJob::~BackupJob() {
  Status s = End();
  if (!s.ok()) std::fprintf(stderr, "warning: %s\n", s.message().c_str());
  if (checkpoint_.empty()) return;
  s = DeleteCheckpoint(dom_, domain_, checkpoint_);
  if (!s.ok()) std::fprintf(stderr, "warning: %s\n", s.message().c_str());
}

}  // namespace backupfs
