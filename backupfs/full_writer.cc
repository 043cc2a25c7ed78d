#include "backupfs/full_writer.h"

#include <algorithm>
#include <vector>

namespace backupfs {
namespace {

constexpr uint64_t kCopyBuffer = 4u << 20;
constexpr uint64_t kAheadStep = 16u << 20;  // read-ahead hints: this far ahead, this much

struct Frame {
  uint64_t offset;
  uint64_t length;
  bool data;
  uint64_t end() const { return offset + length; }
};

// The image as frames, neighbours of one kind merged; ranges no extent covers are zeros.
std::vector<Frame> Frames(const DiskImage& image) {
  std::vector<Frame> out;
  auto add = [&out](uint64_t offset, uint64_t length, bool data) {
    if (length == 0) return;
    if (!out.empty() && out.back().data == data && out.back().end() == offset) {
      out.back().length += length;
    } else {
      out.push_back({offset, length, data});
    }
  };
  uint64_t pos = 0;
  for (const ImageExtent& e : image.extents()) {
    add(pos, e.offset - pos, false);
    add(e.offset, e.length, !e.zero);
    pos = e.end();
  }
  add(pos, image.size() - pos, false);
  return out;
}

// The frames of `image` through `create`, which makes the writer once the metadata is known.
Result<FullWriteStats> WriteFrames(
    const DiskImage& image, StreamMetadata meta, const std::string& path,
    const std::function<Result<std::unique_ptr<StreamWriter>>(const StreamMetadata&)>& create,
    const std::atomic<bool>* stop, const std::function<void(uint64_t)>& progress) {
  const std::vector<Frame> frames = Frames(image);
  meta.data_size = 0;
  for (const Frame& f : frames) meta.data_size += f.data ? f.length : 0;
  meta.virtual_size = image.size();
  BFS_ASSIGN_OR_RETURN(std::unique_ptr<StreamWriter> writer, create(meta));
  std::vector<uint8_t> buf(static_cast<size_t>(std::min(kCopyBuffer, meta.data_size)));
  uint64_t done = 0;
  for (const Frame& f : frames) {
    if (!f.data) {
      BFS_RETURN_IF_ERROR(writer->AddZero(f.offset, f.length));
      continue;
    }
    BFS_RETURN_IF_ERROR(writer->BeginData(f.offset, f.length));
    for (uint64_t pos = f.offset; pos < f.end();) {
      if (stop != nullptr && stop->load()) return Status::Cancelled("stopped writing " + path);
      // The reads run a few buffers ahead of the copy, beside the writer's writeback waits.
      if ((pos - f.offset) % kAheadStep == 0) image.WillNeed(pos + kAheadStep, kAheadStep);
      const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), f.end() - pos));
      std::span<uint8_t> piece = std::span(buf).first(n);
      BFS_RETURN_IF_ERROR(image.Read(pos, piece));
      BFS_RETURN_IF_ERROR(writer->Append(piece));
      pos += n;
      done += n;
      if (progress) progress(done);
    }
  }
  BFS_RETURN_IF_ERROR(writer->Finish());
  return FullWriteStats{meta.data_size, writer->bytes_written()};
}

}  // namespace

Result<FullWriteStats> WriteFullBackup(const DiskImage& image, StreamMetadata meta,
                                       const std::string& path, const WriterOptions& options,
                                       const std::atomic<bool>* stop,
                                       const std::function<void(uint64_t)>& progress) {
  return WriteFrames(
      image, std::move(meta), path,
      [&](const StreamMetadata& m) { return StreamWriter::Create(path, m, options); }, stop,
      progress);
}

Result<FullWriteStats> WriteFullBackup(const DiskImage& image, StreamMetadata meta,
                                       Storage& storage, std::string_view name,
                                       const WriterOptions& options, const std::atomic<bool>* stop,
                                       const std::function<void(uint64_t)>& progress) {
  return WriteFrames(
      image, std::move(meta), storage.Describe(name),
      [&](const StreamMetadata& m) { return StreamWriter::Create(storage, name, m, options); },
      stop, progress);
}

}  // namespace backupfs
