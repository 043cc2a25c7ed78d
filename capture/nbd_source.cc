#include "capture/nbd_source.h"

namespace backupfs {

NbdSource::NbdSource(std::unique_ptr<nbd_handle, Closer> handle, NbdConnectOptions options)
    : handle_(std::move(handle)),
      options_(std::move(options)),
      name_("export '" + options_.export_name + "' on " + options_.endpoint.Describe()) {}

Status NbdSource::Error(const std::string& what) const {
  const char* text = nbd_get_error();
  return Status::IOError(what + " on " + name_ + ": " + (text ? text : "unknown libnbd error"));
}

void NbdHandlePark::Keep(nbd_handle* handle) {
  std::lock_guard lock(mu_);
  handles_.push_back(handle);
}

size_t NbdHandlePark::size() const {
  std::lock_guard lock(mu_);
  return handles_.size();
}

void NbdHandlePark::CloseAll() {
  std::lock_guard lock(mu_);
  for (nbd_handle* h : handles_) nbd_close(h);
  handles_.clear();
}

Result<NbdSource> NbdSource::Connect(const NbdConnectOptions& options) {
  std::unique_ptr<nbd_handle, Closer> handle(nbd_create(), Closer{options.park});
  if (!handle) {
    return Status::IOError("nbd_create for " + options.endpoint.Describe() + ": " +
                           nbd_get_error());
  }
  NbdSource source(std::move(handle), options);
  BFS_RETURN_IF_ERROR(source.Negotiate());
  BFS_RETURN_IF_ERROR(source.ReadSizes());
  return source;
}

Result<NbdSource> NbdSource::StartConnect(const NbdConnectOptions& options) {
  std::unique_ptr<nbd_handle, Closer> handle(nbd_create(), Closer{options.park});
  if (!handle) {
    return Status::IOError("nbd_create for " + options.endpoint.Describe() + ": " +
                           nbd_get_error());
  }
  NbdSource source(std::move(handle), options);
  BFS_RETURN_IF_ERROR(source.Prepare());
  if (Status s = StartNbdConnect(source.handle(), options.endpoint); !s.ok()) {
    return s.WithPrefix("export '" + options.export_name + "'");
  }
  return source;
}

Status NbdSource::FinishConnect() {
  if (Status s = FinishNbdConnect(handle(), options_.endpoint); !s.ok()) {
    return s.WithPrefix("export '" + options_.export_name + "'");
  }
  if (options_.allocation) BFS_RETURN_IF_ERROR(CheckContext(kBaseAllocation));
  if (!options_.dirty_context.empty()) BFS_RETURN_IF_ERROR(CheckContext(options_.dirty_context));
  return ReadSizes();
}

// Settings made before connecting.
Status NbdSource::Prepare() {
  nbd_handle* h = handle_.get();
  // libnbd zero-fills every read buffer first, in case a caller used the bytes of a failed
  // read; ours never do (a failed read fails the copy), and the fill cost ~2% of a full copy.
  nbd_set_pread_initialize(h, false);
  if (nbd_set_export_name(h, options_.export_name.c_str()) == -1) {
    return Error("nbd_set_export_name");
  }
  if (options_.allocation && nbd_add_meta_context(h, kBaseAllocation) == -1) {
    return Error("nbd_add_meta_context base:allocation");
  }
  if (!options_.dirty_context.empty() &&
      nbd_add_meta_context(h, options_.dirty_context.c_str()) == -1) {
    return Error("nbd_add_meta_context " + options_.dirty_context);
  }
  return Status::Ok();
}

Status NbdSource::Negotiate() {
  BFS_RETURN_IF_ERROR(Prepare());
  nbd_handle* h = handle_.get();
  // ConnectNbd's errors name the endpoint; name the export too.
  if (Status s = ConnectNbd(h, options_.endpoint); !s.ok()) {
    return s.WithPrefix("export '" + options_.export_name + "'");
  }
  if (options_.allocation) BFS_RETURN_IF_ERROR(CheckContext(kBaseAllocation));
  if (!options_.dirty_context.empty()) BFS_RETURN_IF_ERROR(CheckContext(options_.dirty_context));
  return Status::Ok();
}

// A server silently drops contexts it does not know (a bitmap that does not exist, say).
Status NbdSource::CheckContext(const std::string& context) const {
  int r = nbd_can_meta_context(handle_.get(), context.c_str());
  if (r == -1) return Error("nbd_can_meta_context " + context);
  if (r == 0) return Status::NotFound(name_ + " does not offer meta context " + context);
  return Status::Ok();
}

Status NbdSource::ReadSizes() {
  nbd_handle* h = handle_.get();
  int64_t size = nbd_get_size(h);
  if (size == -1) return Error("nbd_get_size");
  size_ = static_cast<uint64_t>(size);
  int multi = nbd_can_multi_conn(h);
  if (multi == -1) return Error("nbd_can_multi_conn");
  can_multi_conn_ = multi == 1;
  int64_t max_block = nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM);
  if (max_block == -1) return Error("nbd_get_block_size");
  // 0: the server did not say.
  max_block_ = max_block > 0 ? static_cast<uint64_t>(max_block) : kDefaultNbdMaxBlock;
  return Status::Ok();
}

}  // namespace backupfs
