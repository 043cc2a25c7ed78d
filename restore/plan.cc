#include "restore/plan.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "common/block_device_writer.h"
#include "common/domain_xml.h"
#include "stream/file.h"
#include "stream/local_storage.h"

namespace backupfs {
namespace {

namespace fs = std::filesystem;

bool Exists(const std::string& path) {
  struct stat st {};
  return lstat(path.c_str(), &st) == 0;  // a dangling or planted symlink counts
}

// The ids of `point` and the points before it, newest first: where to look for a per-point
// file (vmconfig, qcow.json, boot file copy) that this point's run did not write.
std::vector<std::string> IdsUpTo(const SavesetModel& model, const RestorePoint& point) {
  std::vector<std::string> ids;
  for (const RestorePoint& p : model.points) {
    ids.push_back(p.id);
    if (p.name == point.name) break;
  }
  std::reverse(ids.begin(), ids.end());
  return ids;
}

// The files of a saveset (not its subdirectories), listed once: the planner asks about many
// per-point files, which would otherwise be a request each on a store.
using FileNames = std::set<std::string>;

FileNames NamesOf(const std::vector<StoredObject>& listed) {
  FileNames names;
  for (const StoredObject& o : listed) {
    if (!o.is_dir()) names.insert(o.name);
  }
  return names;
}

// From the listing the saveset was loaded from; listed here only for a model built without
// one (its error is the plan's).
Result<FileNames> ListFiles(const SavesetModel& model, const Storage& saveset) {
  if (model.listing) return NamesOf(*model.listing);
  Result<std::vector<StoredObject>> listed = saveset.List();
  if (!listed.ok()) return listed.status().WithPrefix("cannot read saveset " + saveset.address());
  return NamesOf(*listed);
}

// <prefix><id><suffix> for the newest id that has one; "" when none does.
std::string NewestPerPoint(const FileNames& files, const std::vector<std::string>& ids,
                           const std::string& prefix, const std::string& suffix) {
  for (const std::string& id : ids) {
    std::string name = prefix + id + suffix;
    if (files.count(name)) return name;
  }
  return "";
}

// Domain XML and qcow2 settings are a few KiB; a larger file is not one of them.
constexpr uint64_t kMaxSmallFile = 16u << 20;
// A boot file copied whole: a kernel or an initrd.
constexpr uint64_t kMaxBootFile = 1u << 30;

// Without -u, "the newest point" of a damaged saveset may be an older point than the admin
// thinks (the newest file did not open): refuse, and say which point -u would restore.
Status RefuseDamage(const SavesetModel& model) {
  std::string msg = model.dir + " is damaged: " + model.damage.front();
  if (model.damage.size() > 1) {
    msg += " (and " + std::to_string(model.damage.size() - 1) + " more problems, listed above)";
  }
  if (!model.latest.empty()) {
    msg += "; the newest point that can be restored is " + model.latest + ": give -u " +
           model.latest + " (or an earlier point) to restore it";
  }
  return Status::FailedPrecondition(msg);
}

Result<const RestorePoint*> FindPoint(const SavesetModel& model, const std::string& until) {
  if (until.empty() && !model.damage.empty()) return RefuseDamage(model);
  const std::string name = until.empty() ? model.latest : until;
  for (const RestorePoint& p : model.points) {
    if (p.name == name) return &p;
  }
  if (model.points.empty()) {
    std::string why = model.problems.empty() ? "" : ": " + model.problems.front();
    return Status::NotFound(model.dir + ": no restore point can be restored" + why);
  }
  std::string msg = model.dir + ": no restore point '" + name + "'";
  for (const std::string& problem : model.problems) {
    if (problem.find("restore point " + name + " ") != std::string::npos)
      msg += " (" + problem + ")";
  }
  msg += "; the saveset has:";
  for (const RestorePoint& p : model.points) msg += " " + p.name;
  return Status::NotFound(msg);
}

// A file name taken from the saveset or its XML, which must stay inside OUTDIR.
Status CheckName(const std::string& name, const std::string& from) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
      name.find('\0') != std::string::npos) {
    return Status::InvalidArgument(from + ": '" + name +
                                   "' cannot be a file name in the output directory");
  }
  return Status::Ok();
}

// The remote counterpart of Target's checks: over SFTP, one stat per name. (A directory in
// the way with --force makes qemu-img's create fail, naming it.)
Status CheckRemoteTarget(Host& host, const RestoreOptions& o, const std::string& path) {
  if (o.force) return Status::Ok();
  for (const std::string& p : {path, path + ".partial"}) {
    BFS_ASSIGN_OR_RETURN(bool exists, host.Exists(p));
    if (exists) {
      return Status::FailedPrecondition(host.name() + ": " + p + " exists; --force replaces it");
    }
  }
  return Status::Ok();
}

// OUTDIR/name, refused when it (or a leftover .partial) exists and --force was not given.
// `host`: where OUTDIR is when it is not on this machine.
Result<std::string> Target(const RestoreOptions& o, const std::string& name,
                           const std::string& from, Host* host) {
  BFS_RETURN_IF_ERROR(CheckName(name, from));
  const std::string path = o.output + "/" + name;
  if (host != nullptr) {
    BFS_RETURN_IF_ERROR(CheckRemoteTarget(*host, o, path));
    return path;
  }
  if (fs::is_directory(fs::symlink_status(path))) {
    return Status::FailedPrecondition(path + " is a directory");
  }
  if (o.force) return path;
  for (const std::string& p : {path, path + ".partial"}) {
    if (Exists(p)) return Status::FailedPrecondition(p + " exists; --force replaces it");
  }
  return path;
}

std::string FormatOf(const RestoreOptions& o, const DiskChain& chain) {
  if (o.format == OutputFormat::kQcow2) return "qcow2";
  if (o.format == OutputFormat::kRaw) return "raw";
  return chain.files.back()->meta().disk_format == "raw" ? "raw" : "qcow2";
}

const DiskChain* ChainOf(const RestorePoint& point, const std::string& disk) {
  for (const DiskChain& c : point.disks) {
    if (c.disk == disk) return &c;
  }
  return nullptr;
}

// True when file `name` of the saveset is not a stream (virtnbdbackup's -t raw writes plain
// raw images).
bool IsRawImageFile(const Storage& saveset, const std::string& name) {
  auto head = saveset.Open(name);
  uint8_t magic[5] = {};
  return head.ok() && ((*head)->size() < 5 || !(*head)->ReadAt(0, magic).ok() ||
                       std::string(reinterpret_cast<char*>(magic), 5) != "meta ");
}

// An explicit --format over a name that says otherwise ("web.qcow2" written raw) gets the
// extension of what it holds; names without a known extension are kept.
std::string WithFormatExtension(const std::string& name, const std::string& format,
                                OutputFormat asked) {
  if (asked == OutputFormat::kAuto) return name;
  const std::string ext = fs::path(name).extension().string();
  const bool qcow = ext == ".qcow2" || ext == ".qcow";
  const bool raw = ext == ".raw" || ext == ".img";
  if ((format == "raw" && qcow) || (format == "qcow2" && raw)) {
    return fs::path(name).replace_extension(format == "raw" ? ".raw" : ".qcow2").string();
  }
  return name;
}

// --device: every named disk is restored, into a block device large enough; checked before
// anything is written.
Status CheckDevices(const RestoreOptions& o, const RestorePlan& plan) {
  for (const auto& entry : o.devices) {
    const std::string& disk = entry.first;  // (clang 14 cannot capture a structured binding)
    const std::string& device = entry.second;
    auto d = std::find_if(plan.disks.begin(), plan.disks.end(),
                          [&](const DiskPlan& p) { return p.disk == disk; });
    if (d == plan.disks.end()) {
      return Status::InvalidArgument("--device " + disk + "=" + device + ": restore point " +
                                     plan.point + " restores no disk " + disk);
    }
    const uint64_t size = d->chain.files.empty() ? 0 : d->chain.virtual_size;
    BFS_RETURN_IF_ERROR(CheckBlockDevice(device, size).WithPrefix("disk " + disk));
  }
  return Status::Ok();
}

class Planner {
 public:
  Planner(const SavesetModel& model, const RestoreOptions& o, Host* host)
      : model_(model), o_(o), host_(host) {}

  Result<RestorePlan> Run() {
    BFS_ASSIGN_OR_RETURN(point_, FindPoint(model_, o_.until));
    BFS_ASSIGN_OR_RETURN(files_, ListFiles(model_, saveset()));
    plan_.saveset = model_.storage;
    plan_.point = point_->name;
    plan_.id = point_->id;
    ids_ = IdsUpTo(model_, *point_);
    BFS_RETURN_IF_ERROR(LoadConfig());
    BFS_RETURN_IF_ERROR(PlanDisks());
    if (plan_.disks.empty()) {
      return Status::NotFound(model_.dir + ": restore point " + plan_.point + " has no disk" +
                              (o_.disk.empty() ? "" : " " + o_.disk) + " to restore");
    }
    BFS_RETURN_IF_ERROR(CheckDevices(o_, plan_));
    BFS_RETURN_IF_ERROR(PlanBootFiles());
    if (!plan_.vmconfig_xml.empty()) {
      BFS_ASSIGN_OR_RETURN(plan_.config_target,
                           Target(o_, fs::path(o_.config_file).filename().string(), "-C", host_));
    }
    const std::string autostart = "autostart." + plan_.id;
    if (files_.count(autostart)) plan_.autostart_file = autostart;
    return std::move(plan_);
  }

 private:
  const Storage& saveset() const { return *model_.storage; }

  Status LoadConfig() {
    BFS_ASSIGN_OR_RETURN(bool given, LoadGivenConfig());
    if (given) return Status::Ok();
    const std::string name = ConfigName();
    if (name.empty()) {
      if (o_.adjust_config || o_.define) {
        return Status::NotFound(model_.dir + ": no vmconfig.*.xml for restore point " +
                                plan_.point + ": -c and -D need the domain XML");
      }
      plan_.warnings.push_back(model_.dir + ": no domain XML saved for " + plan_.point +
                               "; images are named after their disks");
      return Status::Ok();
    }
    plan_.vmconfig_path = saveset().Describe(name);
    BFS_ASSIGN_OR_RETURN(plan_.vmconfig_xml, saveset().ReadAll(name, kMaxSmallFile));
    return Status::Ok();
  }

  // -C naming an existing file, a path on this machine or a file of the saveset: that XML.
  Result<bool> LoadGivenConfig() {
    if (o_.config_file == "vmconfig.xml") return false;
    if (fs::is_regular_file(o_.config_file)) {
      plan_.vmconfig_path = o_.config_file;
      BFS_ASSIGN_OR_RETURN(plan_.vmconfig_xml, ReadWholeFile(o_.config_file));
      return true;
    }
    BFS_ASSIGN_OR_RETURN(std::optional<StoredObject> saved, saveset().Stat(o_.config_file));
    if (!saved || saved->is_dir()) return false;
    plan_.vmconfig_path = saveset().Describe(o_.config_file);
    BFS_ASSIGN_OR_RETURN(plan_.vmconfig_xml, saveset().ReadAll(o_.config_file, kMaxSmallFile));
    return true;
  }

  // The point's own domain XML, else the newest an earlier point saved ("" when none).
  std::string ConfigName() {
    std::string own = NewestPerPoint(files_, {plan_.id}, "vmconfig.", ".xml");
    if (!own.empty()) return own;
    std::string older = NewestPerPoint(files_, ids_, "vmconfig.", ".xml");
    if (!older.empty()) {
      plan_.warnings.push_back("restore point " + plan_.point + " has no vmconfig." + plan_.id +
                               ".xml; using " + saveset().Describe(older));
    }
    return older;
  }

  // The disks of the domain XML (or of the point when there is none), in document order.
  Result<std::vector<DomainDisk>> Disks() {
    std::vector<DomainDisk> disks;
    if (!plan_.vmconfig_xml.empty()) {
      BFS_ASSIGN_OR_RETURN(disks, ParseDomainDisks(plan_.vmconfig_xml, plan_.vmconfig_path));
    }
    for (const DiskChain& c : point_->disks) {
      bool listed = std::any_of(disks.begin(), disks.end(),
                                [&](const DomainDisk& d) { return d.target == c.disk; });
      if (!listed)
        disks.push_back({c.disk, "", c.files.back()->meta().disk_format, "disk", "file", ""});
    }
    return disks;
  }

  Status PlanDisks() {
    BFS_ASSIGN_OR_RETURN(std::vector<DomainDisk> disks, Disks());
    if (!o_.disk.empty() && std::none_of(disks.begin(), disks.end(), [&](const DomainDisk& d) {
          return d.target == o_.disk;
        })) {
      return Status::NotFound(model_.dir + ": restore point " + plan_.point + " has no disk " +
                              o_.disk);
    }
    std::set<std::string> names;
    for (const DomainDisk& d : disks) {
      if (!o_.disk.empty() && d.target != o_.disk) continue;
      BFS_RETURN_IF_ERROR(PlanDisk(d, names));
    }
    return Status::Ok();
  }

  Status PlanDisk(const DomainDisk& d, std::set<std::string>& names) {
    DiskPlan p;
    p.disk = d.target;
    if (o_.raw && d.format == "raw") p.raw_copy = RawImageFile(d.target);
    const DiskChain* chain = ChainOf(*point_, d.target);
    if (chain == nullptr && p.raw_copy.empty()) {
      if (std::string why = Unavailable(d.target); !why.empty()) {
        return Status::Corruption("disk " + d.target + " cannot be restored at " + plan_.point +
                                  ": " + why + " (-d restores the other disks one by one)");
      }
      plan_.warnings.push_back("disk " + d.target + " has no backup at restore point " +
                               plan_.point + " (excluded, or added later); not restored");
      if (!o_.disk.empty())
        return Status::NotFound("disk " + d.target + " has no backup at restore point " +
                                plan_.point);
      return Status::Ok();
    }
    if (chain != nullptr) p.chain = *chain;
    p.format = p.raw_copy.empty() ? FormatOf(o_, p.chain) : "raw";
    auto device = o_.devices.find(d.target);
    if (device != o_.devices.end()) {
      p.target = device->second;
      p.block_device = true;
      p.format = "raw";
    } else {
      std::string name = d.source.empty() ? d.target : fs::path(d.source).filename().string();
      name = WithFormatExtension(name, p.format, o_.format);
      if (!names.insert(name).second) name = d.target + "." + name;  // two disks, one basename
      names.insert(name);
      BFS_ASSIGN_OR_RETURN(
          p.target, Target(o_, name, "disk " + d.target + " source '" + d.source + "'", host_));
    }
    p.qcow_json = NewestPerPoint(files_, ids_, d.target + ".", ".qcow.json");
    if (o_.compress && p.format != "qcow2") {
      plan_.warnings.push_back("disk " + d.target + " is restored as " + p.format +
                               (p.block_device ? " into " + p.target : "") +
                               ": --compress applies to qcow2 images only");
    }
    plan_.disks.push_back(std::move(p));
    return Status::Ok();
  }

  // Why `disk` has no chain at this point although the saveset has its files ("" when it
  // simply has none: excluded, or added later).
  std::string Unavailable(const std::string& disk) const {
    for (const std::string& point : {plan_.point, std::string("*")}) {
      auto at = model_.unavailable.find(point);
      if (at == model_.unavailable.end()) continue;
      auto why = at->second.find(disk);
      if (why != at->second.end()) return why->second;
    }
    return "";
  }

  // -r: virtnbdbackup's raw-image copy of a raw disk, when the saveset holds one.
  std::string RawImageFile(const std::string& disk) {
    for (const char* level : {"copy", "full"}) {
      std::string name = disk + "." + level + ".data";
      if (files_.count(name) && IsRawImageFile(saveset(), name)) return name;
    }
    return "";
  }

  Status PlanBootFiles() {
    if (plan_.vmconfig_xml.empty()) return Status::Ok();
    BFS_ASSIGN_OR_RETURN(std::vector<BootFile> files,
                         ParseBootFiles(plan_.vmconfig_xml, plan_.vmconfig_path));
    for (const BootFile& f : files) {
      const std::string base = fs::path(f.path).filename().string();
      BootFilePlan b{f.setting, f.path, NewestPerPoint(files_, ids_, base + ".", ""), ""};
      if (b.saved.empty() && files_.count(base)) b.saved = base;
      if (b.saved.empty()) {
        plan_.warnings.push_back("the " + f.setting + " " + f.path + " has no copy in " +
                                 model_.dir + "; the restored domain needs it in place");
        continue;
      }
      BFS_ASSIGN_OR_RETURN(b.target, Target(o_, base, f.setting + " '" + f.path + "'", host_));
      plan_.boot_files.push_back(std::move(b));
    }
    return Status::Ok();
  }

  const SavesetModel& model_;
  const RestoreOptions& o_;
  Host* host_;  // the output directory's remote host; nullptr: this machine
  const RestorePoint* point_ = nullptr;
  std::vector<std::string> ids_;
  FileNames files_;  // of the saveset
  RestorePlan plan_;
};

}  // namespace

std::shared_ptr<Storage> SavesetStorage(const std::shared_ptr<Storage>& opened,
                                        const std::string& input) {
  if (opened) return opened;
  return OpenLocalStorage(input);
}

Status PutSavedFile(Host& host, const Storage& saveset, const std::string& name,
                    const std::string& target) {
  if (std::optional<std::string> dir = saveset.LocalDir()) {
    return host.PutFile(JoinName(*dir, name), target, 0600);
  }
  BFS_ASSIGN_OR_RETURN(std::string bytes, saveset.ReadAll(name, kMaxBootFile));
  return host.WriteFile(target, bytes, 0600);
}

Result<RestorePlan> PlanRestore(const SavesetModel& model, const RestoreOptions& options,
                                Host* output_host) {
  return Planner(model, options, output_host).Run();
}

Result<DiskChain> ChainFromSequence(const RestoreOptions& o, const OpenOptions& open) {
  const std::shared_ptr<Storage> saveset = SavesetStorage(o);
  DiskChain chain;
  for (const std::string& name : o.sequence) {
    BFS_RETURN_IF_ERROR(CheckName(name, "-s"));
    BFS_ASSIGN_OR_RETURN(std::unique_ptr<StreamReader> r,
                         StreamReader::Open(*saveset, name, open.reader));
    const StreamMetadata& m = r->meta();
    if (chain.files.empty() && m.incremental) {
      return Status::InvalidArgument(r->path() +
                                     ": a sequence must start with a full or copy backup");
    }
    if (!chain.files.empty()) {
      const StreamMetadata& prev = chain.files.back()->meta();
      if (!m.incremental || m.disk_name != prev.disk_name) {
        return Status::InvalidArgument(r->path() + ": not an incremental of disk " +
                                       prev.disk_name);
      }
      if (m.parent_checkpoint != prev.checkpoint_name) {
        return Status::InvalidArgument(r->path() + ": its parent checkpoint is '" +
                                       m.parent_checkpoint + "', the file before it is of '" +
                                       prev.checkpoint_name + "'");
      }
    }
    chain.disk = m.disk_name;
    chain.virtual_size = m.virtual_size;
    chain.files.push_back(std::move(r));
  }
  if (chain.files.empty()) return Status::InvalidArgument("-s: no data files named");
  return chain;
}

Result<RestorePlan> PlanSequence(DiskChain chain, const RestoreOptions& o, Host* output_host) {
  RestorePlan plan;
  plan.saveset = SavesetStorage(o);
  // The point is named as the mount and -u name it: a diff by its file's id (its metadata
  // names the checkpoint the next inc will get), a copy "copy".
  const std::optional<DataFileName> last = ParseDataFileName(o.sequence.back());
  plan.point = !last                               ? chain.files.back()->meta().checkpoint_name
               : last->level == BackupLevel::kCopy ? "copy"
               : last->level == BackupLevel::kFull ? chain.files.back()->meta().checkpoint_name
                                                   : last->id;
  plan.id = plan.point;
  DiskPlan p;
  p.disk = chain.disk;
  p.format = FormatOf(o, chain);
  p.chain = std::move(chain);
  auto device = o.devices.find(p.disk);
  if (device != o.devices.end()) {
    p.target = device->second;
    p.block_device = true;
    p.format = "raw";
  } else {
    BFS_ASSIGN_OR_RETURN(p.target, Target(o, p.disk, "disk name in the metadata", output_host));
  }
  plan.disks.push_back(std::move(p));
  BFS_RETURN_IF_ERROR(CheckDevices(o, plan));
  return plan;
}

}  // namespace backupfs
