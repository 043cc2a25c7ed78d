#include "restore/export.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <thread>

#include "backupfs/saveset.h"
#include "common/nbdkit_server.h"
#include "restore/plan.h"
#include "restore/saveset_mount.h"

namespace backupfs {
namespace {

namespace fs = std::filesystem;

constexpr auto kPollInterval = std::chrono::milliseconds(100);

// A private directory for the mount and nbdkit's log; on the way out the mount goes first.
class ExportDir {
 public:
  ~ExportDir() {
    if (path_.empty()) return;
    if (mounted_) (void)UnmountSaveset(mount());
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  Status Create() {
    char tmpl[] = "/var/tmp/backupfs-export.XXXXXX";
    if (mkdtemp(tmpl) == nullptr)
      return Status::FromErrno("cannot create a directory in /var/tmp", errno);
    path_ = tmpl;
    if (mkdir(mount().c_str(), 0700) != 0)
      return Status::FromErrno("cannot create " + mount(), errno);
    return Status::Ok();
  }
  std::string mount() const { return path_ + "/mnt"; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }
  void set_mounted() { mounted_ = true; }

 private:
  std::string path_;
  bool mounted_ = false;
};

// Splits HOST:PORT ([v6]:PORT too).
Result<std::pair<std::string, std::string>> SplitHostPort(const std::string& tcp) {
  const size_t colon = tcp.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == tcp.size()) {
    return Status::InvalidArgument("--tcp " + tcp + ": expected HOST:PORT (127.0.0.1:10809)");
  }
  std::string host = tcp.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return std::make_pair(host, tcp.substr(colon + 1));
}

Result<std::string> PointDisk(const ExportOptions& o, const RestorePlan& plan) {
  std::string names;
  for (const DiskPlan& d : plan.disks) {
    if (d.disk == o.disk || (o.disk.empty() && plan.disks.size() == 1)) return d.disk;
    names += (names.empty() ? "" : ", ") + d.disk;
  }
  if (o.disk.empty()) {
    return Status::InvalidArgument("restore point " + plan.point + " has disks " + names +
                                   ": choose one with -d");
  }
  return Status::NotFound("restore point " + plan.point + " has no disk " + o.disk + " (it has " +
                          names + ")");
}

}  // namespace

Status RunExport(const ExportOptions& o, RunLog& log, std::atomic<bool>& stop,
                 const std::function<void(const std::string& uri)>& ready) {
  ExportDir dir;
  BFS_RETURN_IF_ERROR(dir.Create());
  RestoreOptions r;
  r.input = o.input;
  r.saveset = SavesetStorage(o.saveset, o.input);
  r.output = dir.File("plan");  // never written: only the point and its disks are wanted
  r.until = o.until;
  r.disk = o.disk;
  BFS_ASSIGN_OR_RETURN(SavesetModel model, LoadSaveset(r.saveset, OpenOptions()));
  for (const std::string& p : model.problems) log.Warn(p);
  BFS_ASSIGN_OR_RETURN(RestorePlan plan, PlanRestore(model, r));
  BFS_ASSIGN_OR_RETURN(std::string disk, PointDisk(o, plan));

  SavesetMountOptions m;
  m.saveset = MountAddress(*r.saveset);
  m.store_options = MountStoreOptions(*r.saveset, o.store);
  m.mountpoint = dir.mount();
  BFS_RETURN_IF_ERROR(MountSaveset(m));
  dir.set_mounted();
  const std::string raw = dir.mount() + "/" + plan.point + "/" + disk + ".raw";

  NbdkitOptions q;
  q.image = raw;
  q.export_name = disk;
  q.log_path = dir.File("nbdkit.log");
  q.writable = o.writable;
  std::string uri;
  if (!o.socket.empty()) {
    q.socket = fs::absolute(o.socket).string();
    uri = "nbd+unix:///" + disk + "?socket=" + q.socket;
  } else {
    BFS_ASSIGN_OR_RETURN(auto hp, SplitHostPort(o.tcp));
    q.tcp_host = hp.first;
    q.tcp_port = hp.second;
    const bool v6 = q.tcp_host.find(':') != std::string::npos;
    uri = "nbd://" + (v6 ? "[" + q.tcp_host + "]" : q.tcp_host) + ":" + q.tcp_port + "/" + disk;
  }
  BFS_ASSIGN_OR_RETURN(std::unique_ptr<NbdkitServer> server, NbdkitServer::Start(q));
  log.Info("exporting disk " + disk + " of restore point " + plan.point +
           (o.writable ? " (writable: writes go to a discarded overlay)" : " (read-only)") +
           " at " + uri);
  ready(uri);
  while (!stop.load()) {
    if (auto ended = server->Exited()) return Status::IOError("nbdkit " + *ended);
    std::this_thread::sleep_for(kPollInterval);
  }
  Status s = server->Stop();
  if (!o.socket.empty()) unlink(q.socket.c_str());
  log.Info("export of disk " + disk + " ended");
  return s;
}

}  // namespace backupfs
