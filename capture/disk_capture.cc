#include "capture/disk_capture.h"

#include <algorithm>
#include <thread>

#include "capture/block_status.h"
#include "capture/extents.h"
#include "capture/nbdinfo_map.h"

namespace backupfs {

namespace {

Result<BlockStatusMaps> MapDisk(NbdSource& source, const DiskTargetPlan& target, RunLog& log) {
  if (!target.qemu_extents) return QueryBlockStatus(source);
  log.Debug("disk " + source.options().export_name + ": extents from nbdinfo --map");
  return QueryWithNbdinfo(source.options(), source.size());
}

Status WriteStream(NbdSource& source, const ExtentList& frames, const DiskTargetPlan& target,
                   const CopyOptions& copy, CapturedDisk& out) {
  StreamMetadata meta = target.meta;
  meta.virtual_size = source.size();
  meta.data_size = out.summary.data_bytes;
  meta.compression_level = target.lz4_level;
  WriterOptions w;
  w.lz4_level = target.lz4_level;
  // lz4 level 2 runs at about the NBD read rate per core: compress on every core so that
  // compression keeps pace with the reads.
  w.compress_threads = std::max(2u, std::thread::hardware_concurrency());
  BFS_ASSIGN_OR_RETURN(out.stream, StreamWriter::Create(*target.storage, target.name, meta, w));
  return CopyToStream(source, frames, *out.stream, copy);
}

Status WriteRaw(NbdSource& source, const ExtentList& frames, const DiskTargetPlan& target,
                const CopyOptions& copy, CapturedDisk& out) {
  BFS_ASSIGN_OR_RETURN(out.raw, RawTarget::Create(*target.storage, target.name, source.size()));
  RawTarget& raw = *out.raw;
  return ReadExtents(source, frames, copy, [&raw](uint64_t offset, std::span<const uint8_t> b) {
    return raw.Write(offset, b);
  });
}

}  // namespace

Status CapturedDisk::Finish(const StreamWriter::CommitCheck& may_commit) {
  if (stream) {
    BFS_RETURN_IF_ERROR(stream->Finish(may_commit));
    summary.file_bytes = stream->bytes_written();
    return Status::Ok();
  }
  BFS_RETURN_IF_ERROR(raw->Finish(may_commit));
  summary.file_bytes = raw->bytes_written();
  return Status::Ok();
}

Result<CapturedDisk> CaptureDisk(const DomainDisk& disk, const DiskSourcePlan& plan,
                                 const DiskTargetPlan& target, ProgressBoard& progress,
                                 const std::function<bool()>& cancelled, RunLog& log) {
  NbdConnectOptions c{plan.endpoint, plan.export_name, true, plan.dirty_context, plan.park};
  BFS_ASSIGN_OR_RETURN(NbdSource source, NbdSource::Connect(c));
  BFS_ASSIGN_OR_RETURN(BlockStatusMaps maps, MapDisk(source, target, log));
  const ExtentList frames = plan.dirty_context.empty()
                                ? FullFrames(maps.allocation)
                                : IncrementalFrames(maps.dirty, maps.allocation);
  CapturedDisk out;
  out.summary = {disk.target, target.name, source.size(), DataBytes(frames), 0};
  log.Info("disk " + disk.target + ": " + std::to_string(frames.size()) + " extents, " +
           std::to_string(out.summary.data_bytes) + " bytes to read of " +
           std::to_string(source.size()));
  ProgressBoard::Disk& bar = progress.Start(disk.target, out.summary.data_bytes);
  CopyOptions copy;
  copy.cancelled = cancelled;
  copy.delivered = [&bar](uint64_t n) { bar.Add(n); };
  BFS_RETURN_IF_ERROR(target.type == OutputType::kRaw
                          ? WriteRaw(source, frames, target, copy, out)
                          : WriteStream(source, frames, target, copy, out));
  progress.Finish(bar);
  return out;
}

}  // namespace backupfs
