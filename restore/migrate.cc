// Live restore: libvirt block copy of every disk of a running instant domain, then a pivot.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <set>
#include <thread>

#include "capture/libvirt_instant.h"
#include "common/domain_xml.h"
#include "common/progress.h"
#include "restore/instant.h"
#include "restore/instant_domain.h"
#include "restore/instant_remote.h"
#include "stream/file.h"

namespace backupfs {
namespace {

namespace fs = std::filesystem;

// libvirt answers a job query in well under a millisecond; a finer poll ends the copy sooner.
constexpr auto kPollInterval = std::chrono::milliseconds(25);
// A copy that caught up may briefly refuse the pivot while QEMU settles; then it is retried.
constexpr auto kPivotRetryFor = std::chrono::seconds(30);

// fsync of a file that another process writes (QEMU): an fsync through any descriptor
// flushes the file's dirty pages.
Status FlushFile(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("cannot open " + path + " to flush it", errno);
  return FsyncFile(fd.get(), path);
}

class Migration {
 public:
  Migration(const MigrateOptions& o, RunLog& log, std::atomic<bool>& stop)
      : o_(o), log_(log), stop_(stop) {}

  Status Run() {
    BFS_ASSIGN_OR_RETURN(in_, OpenInstant(o_.uri, o_.name));
    if (in_.record.remote()) {
      BFS_RETURN_IF_ERROR(CheckServedHere(in_.record, o_.name));
      BFS_ASSIGN_OR_RETURN(host_, ConnectInstantHost(o_.uri, o_.remote));
    }
    BFS_ASSIGN_OR_RETURN(bool active, DomainIsActive(dom(), o_.name));
    if (!active) {
      return Status::FailedPrecondition("domain " + o_.name +
                                        " is not running: a live restore copies a running domain; "
                                        "start it with: backupfs-restore -a instant-resume -N " +
                                        o_.name);
    }
    BFS_RETURN_IF_ERROR(PrepareTargets());
    in_.record.migrate_to = dir_;
    in_.record.migration = "running";
    BFS_RETURN_IF_ERROR(SaveRecord(in_));
    if (Status s = StartCopies(); !s.ok()) return Fail(s);
    if (Status s = WaitUntilReady(); !s.ok()) return Fail(s);
    if (Status s = Pivot(); !s.ok()) return Fail(s);
    return Finish();
  }

 private:
  virDomainPtr dom() { return in_.dom.get(); }

  // The target directory and images are on the domain's host: host_ when it is remote.
  Result<bool> TargetExists(const std::string& path) {
    if (host_) return host_->Exists(path);
    std::error_code ec;
    return fs::exists(path, ec) || fs::is_symlink(path, ec);
  }
  bool RemoveTarget(const std::string& path) {
    if (host_) return host_->Remove(path).ok();
    return unlink(path.c_str()) == 0;
  }

  Status PrepareRemoteTargetDir() {
    dir_ = fs::path(o_.target_dir).lexically_normal().string();
    if (dir_.size() > 1 && dir_.back() == '/') dir_.pop_back();
    if (dir_.empty() || dir_[0] != '/') {
      return Status::InvalidArgument("--migrate-to " + o_.target_dir + ": a directory on " +
                                     host_->name() + " must be an absolute path");
    }
    BFS_ASSIGN_OR_RETURN(bool exists, host_->Exists(dir_));
    if (!exists) BFS_RETURN_IF_ERROR(host_->MakeDirs(dir_, 0755));
    return Status::Ok();
  }

  Status PrepareTargetDir() {
    if (host_) return PrepareRemoteTargetDir();
    dir_ = fs::absolute(o_.target_dir).lexically_normal().string();
    std::error_code ec;
    if (!fs::exists(dir_, ec) && mkdir(dir_.c_str(), 0755) != 0) {
      return Status::FromErrno("cannot create " + dir_, errno);
    }
    BFS_ASSIGN_OR_RETURN(std::optional<UserIdentity> qemu, QemuIdentity(in_.conn.get()));
    if (qemu) BFS_RETURN_IF_ERROR(CheckUserCanReach(dir_, *qemu, "the QEMU user"));
    return Status::Ok();
  }

  Status PrepareTargets() {
    BFS_RETURN_IF_ERROR(PrepareTargetDir());
    for (const InstantDisk& d : in_.record.disks) {
      const std::string target = dir_ + "/" + fs::path(d.overlay).filename().string();
      BFS_ASSIGN_OR_RETURN(BlockJobState job, GetBlockJob(dom(), o_.name, d.target));
      if (job.exists) {
        if (in_.record.migrate_to != dir_ || job.type != VIR_DOMAIN_BLOCK_JOB_TYPE_COPY) {
          return Status::FailedPrecondition(
              "domain " + o_.name + " disk " + d.target + ": another block job runs on it" +
              (in_.record.migrate_to.empty() ? "" : " (a copy to " + in_.record.migrate_to + ")") +
              "; cancel it with: virsh blockjob " + o_.name + " " + d.target + " --abort");
        }
        log_.Info("disk " + d.target + ": taking over the copy to " + target +
                  " that an earlier run started");
        taken_over_.insert(d.target);
      } else {
        BFS_ASSIGN_OR_RETURN(bool exists, TargetExists(target));
        if (exists) {
          return Status::FailedPrecondition(target + " exists already" +
                                            (host_ ? " on " + host_->name() : "") +
                                            "; remove it or choose another --migrate-to "
                                            "directory");
        }
      }
      targets_.push_back(target);
    }
    return Status::Ok();
  }

  Status StartCopies() {
    for (size_t i = 0; i < in_.record.disks.size(); ++i) {
      const std::string& disk = in_.record.disks[i].target;
      if (taken_over_.count(disk)) {
        // A killed run's copy keeps the speed it was given; this run's applies.
        BFS_RETURN_IF_ERROR(SetBlockJobSpeed(dom(), o_.name, disk, o_.bandwidth));
        continue;
      }
      BFS_RETURN_IF_ERROR(StartBlockCopy(dom(), o_.name, disk, targets_[i], o_.bandwidth));
      started_.insert(disk);
      log_.Info("disk " + disk + ": copying into " + targets_[i] + " while the domain runs");
    }
    return Status::Ok();
  }

  // Polls the jobs until every copy caught up; a job that vanishes has failed.
  Status WaitUntilReady() {
    ProgressBoard board(log_, o_.progress && isatty(STDERR_FILENO));
    const size_t n = in_.record.disks.size();
    std::vector<ProgressBoard::Disk*> bars(n, nullptr);
    std::vector<uint64_t> shown(n, 0);
    for (;;) {
      if (stop_.load()) return Status::Cancelled("interrupted");
      bool all_ready = true;
      for (size_t i = 0; i < n; ++i) {
        const std::string& disk = in_.record.disks[i].target;
        BFS_ASSIGN_OR_RETURN(BlockJobState job, GetBlockJob(dom(), o_.name, disk));
        if (!job.exists) return CopyVanished(i);
        if (bars[i] == nullptr && job.end > 0) bars[i] = &board.Start(disk, job.end);
        if (bars[i] != nullptr && job.cur > shown[i]) {
          bars[i]->Add(job.cur - shown[i]);
          shown[i] = job.cur;
        }
        all_ready = all_ready && job.ready();
      }
      if (all_ready) {
        for (auto* b : bars) {
          if (b != nullptr) board.Finish(*b);
        }
        return Status::Ok();
      }
      std::this_thread::sleep_for(kPollInterval);
    }
  }

  Status CopyVanished(size_t i) {
    const std::string& target = targets_[i];
    std::string why = "disk " + in_.record.disks[i].target + ": the copy into " + target +
                      " stopped before it was complete (QEMU's reason is in "
                      "/var/log/libvirt/qemu/" +
                      o_.name + ".log)";
    struct statvfs fsinfo;
    struct stat st;
    if (!host_ && statvfs(dir_.c_str(), &fsinfo) == 0 && stat(target.c_str(), &st) == 0) {
      why += "; " + dir_ + " has " + FormatMib(uint64_t{fsinfo.f_bavail} * fsinfo.f_frsize) +
             " free, the copy had reached " + FormatMib(uint64_t(st.st_blocks) * 512);
      if (fsinfo.f_bavail * fsinfo.f_frsize < (64u << 20)) why += ": is it full?";
    }
    return Status::IOError(why);
  }

  Status Pivot() {
    for (size_t i = 0; i < in_.record.disks.size(); ++i) {
      const std::string& disk = in_.record.disks[i].target;
      const auto deadline = std::chrono::steady_clock::now() + kPivotRetryFor;
      for (;;) {
        Status s = PivotBlockCopy(dom(), o_.name, disk);
        if (s.ok()) break;
        if (std::chrono::steady_clock::now() > deadline || stop_.load()) return s;
        std::this_thread::sleep_for(kPollInterval);
      }
      pivoted_.insert(disk);
      log_.Info("disk " + disk + ": the domain now runs on " + targets_[i]);
    }
    return Status::Ok();
  }

  // The domain runs on the standalone images: the overlays, the mount and the record go.
  Status Finish() {
    BFS_ASSIGN_OR_RETURN(std::string xml, DomainXml(dom(), o_.name));
    BFS_ASSIGN_OR_RETURN(std::vector<DomainDisk> disks, ParseDomainDisks(xml, o_.name));
    for (size_t i = 0; i < in_.record.disks.size(); ++i) {
      auto it = std::find_if(disks.begin(), disks.end(), [&](const DomainDisk& d) {
        return d.target == in_.record.disks[i].target;
      });
      if (it == disks.end() || it->source != targets_[i]) {
        return Status::IOError("domain " + o_.name + " disk " + in_.record.disks[i].target +
                               ": libvirt reports the pivot done but the disk's source is " +
                               (it == disks.end() ? "missing" : it->source) + ", not " +
                               targets_[i] + "; the overlays and the mount are kept");
      }
    }
    // The overlays hold the guest's writes until the copies are on disk: QEMU leaves the
    // copies' last writes in the page cache, so they are flushed before the overlays go.
    if (host_) {
      for (const std::string& target : targets_) BFS_RETURN_IF_ERROR(host_->Sync(target));
      BFS_RETURN_IF_ERROR(host_->Sync(dir_));
    } else {
      for (const std::string& target : targets_) BFS_RETURN_IF_ERROR(FlushFile(target));
      BFS_RETURN_IF_ERROR(FsyncParentDir(targets_.front()));
    }
    BFS_RETURN_IF_ERROR(
        SetDomainMetadata(dom(), o_.name, kInstantNamespace, kInstantPrefix, /*xml=*/""));
    // The boot files (loader, NVRAM) stay: the domain keeps using its copies in the work dir.
    BFS_ASSIGN_OR_RETURN(std::vector<BootFile> boot, ParseBootFiles(xml, o_.name));
    InstantRecord drop = in_.record;
    std::erase_if(drop.files, [&](const std::string& f) {
      return std::any_of(boot.begin(), boot.end(), [&](const BootFile& b) { return b.path == f; });
    });
    for (const BootFile& b : boot) {
      if (b.path.rfind(in_.record.workdir + "/", 0) == 0) {
        log_.Info("the " + b.setting + " " + b.path + " stays: the domain uses it");
      }
    }
    Status s = host_ ? RemoveRemoteInstantFiles(*host_, drop, /*keep_files=*/false, log_)
                     : RemoveInstantFiles(drop, /*keep_files=*/false, log_);
    log_.Info("live restore of " + o_.name + " done: it runs on its images in " + dir_ +
              ", no longer on the backup");
    return s;
  }

  // Cancels what this run started (or took over) and is not pivoted, removes those images,
  // and records why in the domain's metadata; the domain stays on its overlays.
  Status Fail(const Status& why) {
    const bool interrupted = why.code() == StatusCode::kCancelled;
    for (size_t i = 0; i < in_.record.disks.size(); ++i) {
      const std::string& disk = in_.record.disks[i].target;
      if (pivoted_.count(disk)) continue;
      auto job = GetBlockJob(dom(), o_.name, disk);
      if (job.ok() && job->exists) {
        if (Status a = AbortBlockJob(dom(), o_.name, disk); !a.ok()) log_.Error(a.message());
      }
      if ((started_.count(disk) || taken_over_.count(disk)) && RemoveTarget(targets_[i])) {
        log_.Info("removed the unfinished copy " + targets_[i]);
      }
    }
    in_.record.migration = interrupted ? "interrupted" : "failed: " + why.message();
    if (Status s = SaveRecord(in_); !s.ok()) log_.Error(s.message());
    if (!pivoted_.empty()) {
      log_.Error("some disks run on their copies in " + dir_ +
                 " already, the others on their overlays");
    }
    return interrupted
               ? Status::Cancelled("live restore interrupted: the domain " + o_.name +
                                   " keeps running on its overlays")
               : why.WithSuffix("; the domain " + o_.name + " keeps running on its overlays");
  }

  const MigrateOptions& o_;
  RunLog& log_;
  std::atomic<bool>& stop_;
  OpenedInstant in_;
  std::unique_ptr<Host> host_;  // a remote domain's host; null for this host's domains
  std::string dir_;
  std::vector<std::string> targets_;  // per disk of the record
  std::set<std::string> started_, taken_over_, pivoted_;
};

}  // namespace

Status MigrateInstant(const MigrateOptions& o, RunLog& log, std::atomic<bool>& stop) {
  return Migration(o, log, stop).Run();
}

}  // namespace backupfs
