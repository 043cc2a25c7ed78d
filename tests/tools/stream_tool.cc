// stream-tool: a test and benchmark driver for the stream library (not installed).
//   write: turns a raw image (or chosen extents of it) into a data file with our writer;
//   apply: applies data files in order onto a raw image, as a restore of a chain would. It
//          reads through backupfs's DiskImage, the mount's and backupfs-restore's reader, so
//          that comparing its output with a reference tests that reader too. The output is
//          replaced: a sparse file of the newest file's size, holding the data extents.
#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <sstream>

#include "backupfs/chain.h"
#include "backupfs/image.h"
#include "stream/file.h"
#include "stream/reader.h"
#include "stream/writer.h"

namespace bfs = backupfs;

namespace {

struct Extent {
  bool data;
  uint64_t offset, length;
};

constexpr uint64_t kBlock = 64 * 1024;

bfs::Result<std::vector<Extent>> ParseExtents(const std::string& spec) {
  std::vector<Extent> out;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    Extent e;
    char kind[8] = {};
    unsigned long long off = 0, len = 0;
    if (std::sscanf(item.c_str(), "%7[a-z]:%llu:%llu", kind, &off, &len) != 3 ||
        (std::string(kind) != "data" && std::string(kind) != "zero")) {
      return bfs::Status::InvalidArgument("bad extent '" + item + "'");
    }
    e.data = std::string(kind) == "data";
    e.offset = off;
    e.length = len;
    out.push_back(e);
  }
  return out;
}

// Whole image: all-zero 64 KiB blocks become zero frames, the rest data; neighbours merged.
bfs::Result<std::vector<Extent>> ScanImage(const bfs::FileSource& image) {
  std::vector<Extent> out;
  std::vector<uint8_t> block(kBlock);
  for (uint64_t pos = 0; pos < image.size(); pos += kBlock) {
    uint64_t n = std::min<uint64_t>(kBlock, image.size() - pos);
    BFS_RETURN_IF_ERROR(image.ReadAt(pos, std::span(block).first(n)));
    bool zero = std::all_of(block.begin(), block.begin() + n, [](uint8_t b) { return b == 0; });
    if (!out.empty() && out.back().data == !zero) {
      out.back().length += n;
    } else {
      out.push_back({!zero, pos, n});
    }
  }
  return out;
}

struct WriteArgs {
  std::string image, output, disk = "vda", checkpoint, parent, level = "full", extents, date;
  std::string format = "qcow2";
  int lz4 = -1;
};

bfs::Status Write(const WriteArgs& a) {
  BFS_ASSIGN_OR_RETURN(bfs::FileSource image, bfs::FileSource::Open(a.image));
  std::vector<Extent> extents;
  if (a.extents.empty()) {
    BFS_ASSIGN_OR_RETURN(extents, ScanImage(image));
  } else {
    BFS_ASSIGN_OR_RETURN(extents, ParseExtents(a.extents));
  }
  bfs::StreamMetadata meta;
  meta.virtual_size = image.size();
  for (const Extent& e : extents) meta.data_size += e.data ? e.length : 0;
  meta.date = a.date;
  meta.disk_name = a.disk;
  meta.disk_format = a.format;
  meta.checkpoint_name = a.checkpoint;
  meta.parent_checkpoint = a.parent;
  meta.incremental = a.level == "inc" || a.level == "diff";
  bfs::WriterOptions opts;
  if (a.lz4 >= 0) opts.lz4_level = a.lz4;
  BFS_ASSIGN_OR_RETURN(auto w, bfs::StreamWriter::Create(a.output, meta, opts));
  std::vector<uint8_t> buf(8 << 20);
  for (const Extent& e : extents) {
    if (!e.data) {
      BFS_RETURN_IF_ERROR(w->AddZero(e.offset, e.length));
      continue;
    }
    BFS_RETURN_IF_ERROR(w->BeginData(e.offset, e.length));
    for (uint64_t done = 0; done < e.length;) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), e.length - done));
      BFS_RETURN_IF_ERROR(image.ReadAt(e.offset + done, std::span(buf).first(n)));
      BFS_RETURN_IF_ERROR(w->Append(std::span(buf).first(n)));
      done += n;
    }
  }
  return w->Finish();
}

// The files as one disk's chain, in the order given (oldest first, later files win): the
// caller chose them, so no parent links are checked. The image has the newest file's size.
bfs::Result<bfs::DiskChain> OpenChain(const std::vector<std::string>& files) {
  bfs::DiskChain chain;
  for (const std::string& f : files) {
    BFS_ASSIGN_OR_RETURN(std::shared_ptr<bfs::StreamReader> r, bfs::StreamReader::Open(f));
    chain.disk = r->meta().disk_name;
    chain.virtual_size = r->meta().virtual_size;
    chain.files.push_back(std::move(r));
  }
  return chain;
}

// pwrite of all of `bytes` at `offset` (retrying short writes and EINTR).
bfs::Status WriteAllAt(int fd, std::span<const uint8_t> bytes, uint64_t offset,
                       const std::string& name) {
  while (!bytes.empty()) {
    const ssize_t n = ::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return bfs::Status::FromErrno("cannot write " + name, n < 0 ? errno : EIO);
    bytes = bytes.subspan(static_cast<size_t>(n));
    offset += static_cast<uint64_t>(n);
  }
  return bfs::Status::Ok();
}

// Copies [from, to) of the image into `out` at the same offset.
bfs::Status CopyRange(const bfs::DiskImage& image, uint64_t from, uint64_t to, int out,
                      const std::string& output, std::vector<uint8_t>& buf) {
  for (uint64_t pos = from; pos < to;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), to - pos));
    std::span<uint8_t> piece = std::span(buf).first(n);
    BFS_RETURN_IF_ERROR(image.Read(pos, piece));
    BFS_RETURN_IF_ERROR(WriteAllAt(out, piece, pos, output));
    pos += n;
  }
  return bfs::Status::Ok();
}

// Writes the image's data extents into a fresh `output`; zero extents and holes stay holes.
bfs::Status Apply(const std::string& output, const std::vector<std::string>& files) {
  BFS_ASSIGN_OR_RETURN(bfs::DiskChain chain, OpenChain(files));
  std::shared_ptr<bfs::DiskImage> image = bfs::DiskImage::Build(chain);
  BFS_ASSIGN_OR_RETURN(bfs::UniqueFd out, bfs::OpenFile(output, O_RDWR | O_CREAT | O_TRUNC, 0644));
  if (::ftruncate(out.get(), static_cast<off_t>(image->size())) != 0) {
    return bfs::Status::FromErrno("cannot resize " + output, errno);
  }
  std::vector<uint8_t> buf(8 << 20);
  for (uint64_t pos = image->NextData(0); pos < image->size();) {
    const uint64_t end = image->NextHole(pos);
    BFS_RETURN_IF_ERROR(CopyRange(*image, pos, end, out.get(), output, buf));
    pos = image->NextData(end);
  }
  return bfs::Status::Ok();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"stream library test driver", "stream-tool"};
  app.require_subcommand(1);
  WriteArgs w;
  auto* write = app.add_subcommand("write", "write a data file from a raw image");
  write->add_option("--image", w.image)->required();
  write->add_option("--output", w.output)->required();
  write->add_option("--disk", w.disk);
  write->add_option("--format", w.format);
  write->add_option("--checkpoint", w.checkpoint)->required();
  write->add_option("--parent", w.parent);
  write->add_option("--level", w.level)->check(CLI::IsMember({"full", "inc", "diff", "copy"}));
  write->add_option("--lz4", w.lz4);
  write->add_option("--extents", w.extents);
  write->add_option("--date", w.date);
  std::string output;
  std::vector<std::string> files;
  auto* apply = app.add_subcommand("apply", "apply data files in order onto a raw image");
  apply->add_option("--output", output)->required();
  apply->add_option("files", files)->required();
  CLI11_PARSE(app, argc, argv);
  bfs::Status s = write->parsed() ? Write(w) : Apply(output, files);
  if (!s.ok()) {
    std::fprintf(stderr, "stream-tool: %s\n", s.message().c_str());
    return 1;
  }
  return 0;
}
