// Writes a restore point's disk image as a full backup data file: the image's extent map
// becomes frames (contiguous data extents one data frame, zero extents and ranges no file
// covers zero frames), the bytes come through DiskImage::Read, so every chunk is checked as a
// mount would check it, and a damaged chunk stops the write naming its file and offset.
// Work is proportional to the data: zeros and holes are frame headers only.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "backupfs/image.h"
#include "stream/metadata.h"
#include "stream/status.h"
#include "stream/storage.h"
#include "stream/writer.h"

namespace backupfs {

struct FullWriteStats {
  uint64_t data_bytes = 0;  // bytes of data frames
  uint64_t file_bytes = 0;  // size of the file written
};

// Writes `path` (through `<path>.partial`, see StreamWriter) with `meta` (its data_size is
// computed here). `stop`, when set, ends the write with Cancelled and no file left behind;
// `progress` is told the data bytes written so far.
Result<FullWriteStats> WriteFullBackup(const DiskImage& image, StreamMetadata meta,
                                       const std::string& path, const WriterOptions& options,
                                       const std::atomic<bool>* stop = nullptr,
                                       const std::function<void(uint64_t)>& progress = {});
// The same into file `name` of `storage` (a directory or a store).
Result<FullWriteStats> WriteFullBackup(const DiskImage& image, StreamMetadata meta,
                                       Storage& storage, std::string_view name,
                                       const WriterOptions& options,
                                       const std::atomic<bool>* stop = nullptr,
                                       const std::function<void(uint64_t)>& progress = {});

}  // namespace backupfs
