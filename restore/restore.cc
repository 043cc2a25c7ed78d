#include "restore/restore.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <thread>

#include "backupfs/image.h"
#include "capture/libvirt.h"
#include "common/block_device_writer.h"
#include "common/domain_xml.h"
#include "common/host_tls.h"
#include "common/nbd_image_writer.h"
#include "common/progress.h"
#include "common/qcow2_writer.h"
#include "common/qcow_options.h"
#include "common/raw_image.h"
#include "common/remote.h"
#include "common/thread_annotations.h"
#include "common/vmconfig_adjust.h"
#include "restore/copy.h"
#include "restore/plan.h"
#include "restore/serialized_host.h"

namespace backupfs {
namespace {

namespace fs = std::filesystem;

// Decoded lz4 chunks shared by every disk's readers: bounds the restore's memory.
constexpr uint64_t kChunkCacheBytes = 96u << 20;
// Two cores here; and each disk of a virtnbdbackup -z saveset keeps a 32 MiB chunk in the cache.
constexpr unsigned kMaxParallelDisks = 2;
// Bounds on files of the saveset read whole: qemu-img info's JSON, a boot file.
constexpr uint64_t kMaxQcowJson = 16u << 20;
// -r from a store: one ranged read at a time, the next announced ahead; zeros found by block.
constexpr uint64_t kRawCopyPiece = 8u << 20;
constexpr uint64_t kRawCopyHole = 4096;

template <typename T>
Result<std::unique_ptr<ImageWriter>> AsWriter(Result<std::unique_ptr<T>> r) {
  if (!r.ok()) return r.status();
  return std::unique_ptr<ImageWriter>(std::move(r).value());
}

// A private directory for qemu-nbd's sockets, removed with everything in it.
class SocketDir {
 public:
  static Result<SocketDir> Create() {
    char tmpl[] = "/tmp/backupfs-restore.XXXXXX";
    if (mkdtemp(tmpl) == nullptr)
      return Status::FromErrno("cannot create a directory in /tmp", errno);
    return SocketDir(tmpl);
  }
  SocketDir(SocketDir&& o) noexcept : path_(std::move(o.path_)) { o.path_.clear(); }
  ~SocketDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  explicit SocketDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

class Restore {
 public:
  Restore(const RestoreOptions& o, RunLog& log, std::atomic<bool>& stop)
      : o_(o), log_(log), stop_(stop) {}

  Result<RestoreSummary> Run() {
    BFS_RETURN_IF_ERROR(CheckRemote());
    BFS_ASSIGN_OR_RETURN(connected_, ConnectHost(o_.remote));
    host_ = std::make_unique<SerializedHost>(*connected_);
    if (remote()) {
      tls_ = ReadHostTls(*host_);
      log_.Info("restoring to " + host_->name() + ":" + o_.output + ", images over NBD on " +
                NbdAddress() + ":" + std::to_string(o_.remote.nbd_port) +
                (o_.remote.tls ? " (TLS, " + tls_.dir + " on the host)" : ""));
    }
    BFS_ASSIGN_OR_RETURN(plan_, Plan());
    for (const std::string& w : plan_.warnings) log_.Warn(w);
    summary_.point = plan_.point;
    BFS_RETURN_IF_ERROR(PrepareDefine());
    if (remote()) {
      BFS_RETURN_IF_ERROR(host_->MakeDirs(o_.output, 0755));
    } else {
      std::error_code ec;
      fs::create_directories(o_.output, ec);
      if (ec) return Status::IOError("cannot create " + o_.output + ": " + ec.message());
    }
    BFS_RETURN_IF_ERROR(RestoreDisks());
    BFS_RETURN_IF_ERROR(RestoreBootFiles());
    BFS_RETURN_IF_ERROR(WriteConfig());
    BFS_RETURN_IF_ERROR(Define());
    return std::move(summary_);
  }

 private:
  bool remote() const { return o_.remote.remote(); }
  std::string NbdAddress() const {
    return o_.remote.nbd_ip.empty() ? host_->address() : o_.remote.nbd_ip;
  }

  // What a remote restore cannot do, refused before anything is connected or written.
  Status CheckRemote() const {
    if (!remote()) return Status::Ok();
    if (!o_.devices.empty()) {
      return Status::InvalidArgument(
          "--device writes into a block device of this machine; with -U " + o_.uri +
          " restore into image files on that host (or run backupfs-restore there)");
    }
    if (o_.output.empty() || o_.output.front() != '/') {
      return Status::InvalidArgument("-o " + o_.output +
                                     ": a remote restore needs an absolute "
                                     "path on " +
                                     o_.remote.ssh.host);
    }
    return Status::Ok();
  }

  Result<RestorePlan> Plan() {
    OpenOptions open;
    open.reader.cache = std::make_shared<ChunkCache>(kChunkCacheBytes);
    Host* output_host = remote() ? host_.get() : nullptr;
    if (!o_.sequence.empty()) {
      BFS_ASSIGN_OR_RETURN(DiskChain chain, ChainFromSequence(o_, open));
      return PlanSequence(std::move(chain), o_, output_host);
    }
    BFS_ASSIGN_OR_RETURN(SavesetModel model, LoadSaveset(SavesetStorage(o_), open));
    for (const std::string& p : model.problems) log_.Warn(p);
    return PlanRestore(model, o_, output_host);
  }

  // -D: the new name must be free before anything is written.
  Status PrepareDefine() {
    if (!o_.adjust_config && !o_.define) return Status::Ok();
    BFS_ASSIGN_OR_RETURN(std::string original,
                         ParseDomainName(plan_.vmconfig_xml, plan_.vmconfig_path));
    name_ = o_.name.empty() ? DefaultRestoredName(original) : o_.name;
    if (!o_.define) return Status::Ok();
    SilenceLibvirtErrors();
    RemoteOptions login = o_.remote;
    login.uri = o_.uri;
    BFS_ASSIGN_OR_RETURN(conn_, ConnectLibvirt(login));
    return RequireNameFree(conn_.get(), name_);
  }

  // qemu-nbd's socket for a disk: -f's name with the disk's, else in a private directory
  // made when the first image written through qemu-nbd needs one.
  Result<std::string> SocketFor(const DiskPlan& d) EXCLUDES(mu_) {
    if (!o_.socket_file.empty()) return o_.socket_file + "." + d.disk;
    MutexLock lock(mu_);
    if (!socket_dir_) {
      BFS_ASSIGN_OR_RETURN(SocketDir dir, SocketDir::Create());
      socket_dir_ = std::make_unique<SocketDir>(std::move(dir));
    }
    return socket_dir_->path() + "/" + d.disk + ".sock";
  }

  // A leftover of a killed restore, replaced with --force.
  Status RemoveLeftoverPartial(const DiskPlan& d) {
    if (!o_.force || d.block_device) return Status::Ok();
    if (!remote()) {
      unlink((d.target + ".partial").c_str());
      return Status::Ok();
    }
    BFS_ASSIGN_OR_RETURN(bool exists, host_->Exists(d.target + ".partial"));
    return exists ? host_->Remove(d.target + ".partial") : Status::Ok();
  }

  // A remote image: qemu-img and qemu-nbd on the host, the lanes over TCP (TLS). Each worker
  // has its own port (-P, -P + 1, ...), so that parallel disks never share one.
  Result<std::unique_ptr<ImageWriter>> OpenRemoteWriter(NbdImageOptions n, unsigned worker) {
    const unsigned port = o_.remote.nbd_port + worker;
    n.host = host_.get();
    n.tcp.address = NbdAddress();
    n.tcp.port = port;
    if (o_.remote.tls) {
      n.tcp.server_tls_dir = tls_.dir;
      n.tcp.verify_client = tls_.verify;
    }
    n.tcp.client = o_.remote.ClientEndpoint(port);
    log_.Debug("disk image " + Where(n.path) + ": qemu-nbd on " + n.tcp.address + ":" +
               std::to_string(port) + ", connecting to " + n.tcp.client.Describe());
    return AsWriter(NbdImageWriter::Create(n));
  }

  Result<std::unique_ptr<ImageWriter>> OpenWriter(const DiskPlan& d, uint64_t size,
                                                  unsigned worker) {
    if (d.block_device) return AsWriter(BlockDeviceWriter::Open(d.target, size));
    BFS_RETURN_IF_ERROR(RemoveLeftoverPartial(d));
    if (d.format == "raw" && !o_.preallocate && !remote())
      return AsWriter(RawImageWriter::Create(d.target, size));
    NbdImageOptions n;
    n.path = d.target;
    n.format = d.format;
    n.size = size;
    n.preallocate = o_.preallocate;
    n.compress = o_.compress;
    if (d.format == "qcow2") {
      BFS_ASSIGN_OR_RETURN(n.create_options, CreateOptions(d));
    }
    if (remote()) return OpenRemoteWriter(std::move(n), worker);
    n.host = host_.get();
    Qcow2Layout direct;
    if (d.format == "qcow2" && !o_.qemu_writer && !o_.preallocate && !o_.compress &&
        Qcow2WriterFits(n.create_options, &direct)) {
      return AsWriter(Qcow2Writer::Create(d.target, size, direct));
    }
    BFS_ASSIGN_OR_RETURN(n.socket, SocketFor(d));
    return AsWriter(NbdImageWriter::Create(n));
  }

  // The backed-up image's qcow2 settings, when its qemu-img info was saved.
  Result<std::vector<std::string>> CreateOptions(const DiskPlan& d) {
    if (d.qcow_json.empty()) return std::vector<std::string>();
    BFS_ASSIGN_OR_RETURN(std::string json, plan_.saveset->ReadAll(d.qcow_json, kMaxQcowJson));
    auto q = ParseQcowCreateOptions(json, plan_.saveset->Describe(d.qcow_json));
    if (!q.ok()) {
      log_.Warn(q.status().message() + "; the image gets qemu-img's defaults");
      return std::vector<std::string>();
    }
    for (const std::string& note : q->notes) log_.Warn(note);
    return q->options;
  }

  // "/dir/img" here, "host 127.0.0.2:/dir/img" on a remote host.
  std::string Where(const std::string& path) const {
    return remote() ? host_->name() + ":" + path : path;
  }

  Status RestoreDisk(const DiskPlan& d, ProgressBoard& board, unsigned worker) {
    if (!d.raw_copy.empty()) return CopyRawFile(d, worker);
    std::shared_ptr<DiskImage> image = DiskImage::Build(d.chain);
    BFS_ASSIGN_OR_RETURN(std::unique_ptr<ImageWriter> out, OpenWriter(d, image->size(), worker));
    CopyOptions copy;
    const uint64_t data = BytesToRead(*image, *out, copy);
    log_.Info("disk " + d.disk + ": restore point " + plan_.point + " (" +
              std::to_string(d.chain.files.size()) + " data files, " + FormatMib(data) +
              " of data) into " + Where(d.target) + " (" + d.format + ")");
    ProgressBoard::Disk& progress = board.Start(d.disk, data);
    copy.cancel = &stop_;
    copy.progress = [&progress](uint64_t n) { progress.Add(n); };
    Result<CopyStats> stats = CopyImage(*image, *out, copy);
    board.Finish(progress);
    if (!stats.ok()) return Failed(d, stats.status());
    if (Status s = out->Finish(); !s.ok()) return Failed(d, s);
    Record(d, *stats);
    return Status::Ok();
  }

  Status Failed(const DiskPlan& d, const Status& s) {
    if (d.block_device) log_.Error("block device " + d.target + " is only partly written");
    return s.code() == StatusCode::kCancelled ? s : s.WithPrefix("disk " + d.disk);
  }

  void Record(const DiskPlan& d, const CopyStats& stats) EXCLUDES(mu_) {
    MutexLock lock(mu_);
    data_bytes_ += stats.data_bytes;
    written_bytes_ += stats.written_bytes;
    log_.Info("disk " + d.disk + ": " + Where(d.target) + " complete (" +
              FormatMib(stats.written_bytes) + " written)");
  }

  // -r: a raw image data file, copied as it is: its data ranges written, its holes left
  // (or zeroed on a device).
  Status CopyRawFile(const DiskPlan& d, unsigned worker) {
    log_.Info("disk " + d.disk + ": copying the raw image " + plan_.saveset->Describe(d.raw_copy) +
              " to " + Where(d.target));
    BFS_ASSIGN_OR_RETURN(std::unique_ptr<StoredFile> src, plan_.saveset->Open(d.raw_copy));
    const uint64_t size = src->size();
    std::unique_ptr<ImageWriter> out;
    if (remote()) {
      BFS_ASSIGN_OR_RETURN(out, OpenWriter(d, size, worker));
    } else {
      if (o_.force && !d.block_device) unlink((d.target + ".partial").c_str());
      BFS_ASSIGN_OR_RETURN(out, d.block_device ? AsWriter(BlockDeviceWriter::Open(d.target, size))
                                               : AsWriter(RawImageWriter::Create(d.target, size)));
    }
    BFS_ASSIGN_OR_RETURN(uint64_t written,
                         src->fd() >= 0 ? CopyFileRanges(*src, *out) : CopyStoredBytes(*src, *out));
    if (stop_.load()) return Failed(d, Status::Cancelled("interrupted"));
    if (Status s = out->Finish(); !s.ok()) return Failed(d, s);
    Record(d, {written, written});
    return Status::Ok();
  }

  // A local file: its data ranges (SEEK_DATA/SEEK_HOLE) are written, its holes left.
  Result<uint64_t> CopyFileRanges(const StoredFile& src, ImageWriter& out) {
    std::vector<uint8_t> buf(4u << 20);
    uint64_t pos = 0, written = 0;
    while (pos < src.size() && !stop_.load()) {
      off_t data = lseek(src.fd(), static_cast<off_t>(pos), SEEK_DATA);
      const uint64_t from = data < 0 ? src.size() : static_cast<uint64_t>(data);
      if (from > pos && !out.zeroed_at_start()) BFS_RETURN_IF_ERROR(out.Zero(0, pos, from - pos));
      if (data < 0) break;  // only a hole follows
      const uint64_t to = static_cast<uint64_t>(lseek(src.fd(), data, SEEK_HOLE));
      for (pos = from; pos < to && !stop_.load(); pos += buf.size()) {
        const uint64_t n = std::min<uint64_t>(buf.size(), to - pos);
        BFS_RETURN_IF_ERROR(src.ReadAt(pos, std::span(buf.data(), n)));
        BFS_RETURN_IF_ERROR(out.Write(0, pos, std::span<const uint8_t>(buf.data(), n)));
        written += n;
      }
      pos = to;
    }
    return written;
  }

  // A stored object has no holes to find: it is read front to back, and blocks of zeros are
  // left to the image (or zeroed, on a device), at the granularity of a local file's holes so
  // that the image is as thin as the copy from a directory.
  Result<uint64_t> CopyStoredBytes(const StoredFile& src, ImageWriter& out) {
    std::vector<uint8_t> buf(kRawCopyPiece);
    const uint64_t block = std::max(kRawCopyHole, out.grain());
    uint64_t written = 0;
    for (uint64_t pos = 0; pos < src.size() && !stop_.load(); pos += buf.size()) {
      const uint64_t n = std::min<uint64_t>(buf.size(), src.size() - pos);
      src.WillNeed(pos + n, kRawCopyPiece);
      std::span<uint8_t> bytes(buf.data(), n);
      BFS_RETURN_IF_ERROR(src.ReadAt(pos, bytes));
      BFS_ASSIGN_OR_RETURN(uint64_t w, WriteNonZero(out, 0, pos, block, bytes));
      written += w;
    }
    return written;
  }

  // How many disks are written at once: -w (default 2), at most one per disk. Through
  // --nbd-connect (one forwarded port) a remote restore writes one disk after another.
  unsigned Workers() const {
    if (remote() && !o_.remote.nbd_connect.empty()) return 1;
    const size_t n = plan_.disks.size();
    return std::max<unsigned>(1, std::min<size_t>(n, o_.workers ? o_.workers : kMaxParallelDisks));
  }

  // Disks run on up to -w threads; the first failure stops the others.
  Status RestoreDisks() {
    ProgressBoard board(log_, o_.progress && isatty(STDERR_FILENO));
    const size_t n = plan_.disks.size();
    const unsigned workers = Workers();
    std::atomic<size_t> next{0};
    std::vector<Status> results(n, Status::Cancelled("not started"));
    auto work = [&](unsigned worker) {
      for (size_t i; (i = next.fetch_add(1)) < n && !stop_.load();) {
        results[i] = RestoreDisk(plan_.disks[i], board, worker);
        if (!results[i].ok()) stop_ = true;
      }
    };
    std::vector<std::thread> threads;
    for (unsigned w = 1; w < workers; ++w) {
      try {
        threads.emplace_back(work, w);
      } catch (const std::system_error&) {
        break;
      }
    }
    work(0);
    for (auto& t : threads) t.join();
    return FirstFailure(results);
  }

  // "; complete and kept: a, b": the images finished before a failure or stop (they are
  // whole and correct, so they stay).
  std::string Completed(const std::vector<Status>& results) const {
    std::string done;
    for (size_t i = 0; i < results.size(); ++i) {
      if (results[i].ok())
        done += (done.empty() ? "; complete and kept: " : ", ") + Where(plan_.disks[i].target);
    }
    return done;
  }

  // The first real failure (a disk that only stopped because another failed says less),
  // or the interruption; Ok when every disk is complete.
  Status FirstFailure(const std::vector<Status>& results) EXCLUDES(mu_) {
    for (const Status& s : results) {
      if (!s.ok() && s.code() != StatusCode::kCancelled) return s.WithSuffix(Completed(results));
    }
    for (const Status& s : results) {
      if (!s.ok()) {
        return Status::Cancelled("restore interrupted; partial images removed" +
                                 Completed(results));
      }
    }
    for (const DiskPlan& d : plan_.disks) summary_.images.push_back(d.target);
    MutexLock lock(mu_);
    summary_.data_bytes = data_bytes_;
    summary_.written_bytes = written_bytes_;
    return Status::Ok();
  }

  // Loader, NVRAM, kernel, initrd: copied to the host (SFTP when remote; PutFile writes a
  // partial file, fsyncs and renames it).
  Status RestoreBootFiles() {
    for (const BootFilePlan& b : plan_.boot_files) {
      BFS_RETURN_IF_ERROR(PutSavedFile(*host_, *plan_.saveset, b.saved, b.target));
      log_.Info("the " + b.setting + " " + b.original + " restored as " + Where(b.target));
    }
    return Status::Ok();
  }

  // The path the domain XML names: remote paths are absolute already (CheckRemote).
  std::string DomainPath(const std::string& path) const {
    if (remote()) return fs::path(path).lexically_normal().string();
    return fs::absolute(path).lexically_normal().string();
  }

  Result<std::string> AdjustedConfig() {
    VmConfigChanges changes;
    changes.name = name_;
    for (const DiskPlan& d : plan_.disks) {
      changes.disks[d.disk] = {DomainPath(d.target), d.format, d.block_device};
    }
    for (const BootFilePlan& b : plan_.boot_files) {
      changes.boot_files[b.setting] = DomainPath(b.target);
    }
    return AdjustDomainXml(plan_.vmconfig_xml, changes, plan_.vmconfig_path);
  }

  Status WriteConfig() {
    if (plan_.vmconfig_xml.empty()) return Status::Ok();
    std::string xml = plan_.vmconfig_xml;
    if (o_.adjust_config || o_.define) {
      BFS_ASSIGN_OR_RETURN(xml, AdjustedConfig());
      adjusted_ = xml;
    }
    // Both hosts write it as a partial file, fsync it and rename it into place.
    BFS_RETURN_IF_ERROR(host_->WriteFile(plan_.config_target, xml, 0600));
    summary_.config = plan_.config_target;
    log_.Info(std::string(adjusted_.empty() ? "domain XML (as saved) " : "adjusted domain XML ") +
              "written to " + Where(plan_.config_target));
    return Status::Ok();
  }

  Status Define() {
    if (!o_.define) return Status::Ok();
    BFS_ASSIGN_OR_RETURN(UniqueDomain dom, DefineDomain(conn_.get(), adjusted_, name_));
    if (!plan_.autostart_file.empty()) BFS_RETURN_IF_ERROR(SetAutostart(dom.get(), name_, true));
    summary_.defined = name_;
    log_.Info("domain " + name_ + " defined");
    return Status::Ok();
  }

  const RestoreOptions& o_;
  RunLog& log_;
  std::atomic<bool>& stop_;
  RestorePlan plan_;
  std::string name_;                      // of the restored domain (-c, -D)
  std::string adjusted_;                  // the adjusted domain XML
  UniqueConnect conn_;                    // -D
  std::unique_ptr<Host> connected_;       // this machine, or the -U host over ssh
  std::unique_ptr<SerializedHost> host_;  // connected_, shared by the disks' threads
  HostTls tls_;                           // a remote host's x509 setup (--tls)
  RestoreSummary summary_;
  Mutex mu_;  // the disks' threads add up what they wrote, and share the socket directory
  std::unique_ptr<SocketDir> socket_dir_ GUARDED_BY(mu_);
  uint64_t data_bytes_ GUARDED_BY(mu_) = 0;
  uint64_t written_bytes_ GUARDED_BY(mu_) = 0;
};

}  // namespace

Result<RestoreSummary> RunRestore(const RestoreOptions& options, RunLog& log,
                                  std::atomic<bool>& stop) {
  return Restore(options, log, stop).Run();
}

}  // namespace backupfs
