#include "restore/copy.h"

#include <algorithm>
#include <cstring>
#include <system_error>
#include <thread>
#include <vector>

#include "common/thread_annotations.h"

namespace backupfs {
namespace {

struct Piece {
  uint64_t offset;
  uint64_t length;
  bool data;  // else a range to zero
};

// The data extents rounded out to `block` boundaries (a block is read, zero-checked and
// written whole, and writers with a grain need whole clusters) and merged where they then
// touch; each range cut at piece_bytes boundaries of the disk. When the writer needs them,
// the ranges in between (zero extents and holes) become ranges to zero.
std::vector<Piece> PlanPieces(const DiskImage& image, uint64_t piece_bytes, uint64_t block,
                              bool need_zeros) {
  std::vector<std::pair<uint64_t, uint64_t>> data;  // [from, to), ascending, disjoint
  for (const ImageExtent& e : image.extents()) {
    if (e.zero) continue;
    const uint64_t from = e.offset / block * block;
    const uint64_t to = std::min(image.size(), (e.end() + block - 1) / block * block);
    if (!data.empty() && from <= data.back().second) {
      data.back().second = std::max(data.back().second, to);
    } else {
      data.emplace_back(from, to);
    }
  }
  std::vector<Piece> out;
  uint64_t pos = 0;
  for (const auto& [from, to] : data) {
    if (need_zeros && from > pos) out.push_back({pos, from - pos, false});
    for (uint64_t off = from; off < to;) {
      const uint64_t end = std::min(to, (off / piece_bytes + 1) * piece_bytes);
      out.push_back({off, end - off, true});
      off = end;
    }
    pos = to;
  }
  if (need_zeros && image.size() > pos) out.push_back({pos, image.size() - pos, false});
  return out;
}

bool AllZero(const uint8_t* p, size_t n) {
  return n == 0 || (p[0] == 0 && std::memcmp(p, p + 1, n - 1) == 0);
}

// Shared by the copy threads: the next piece to take, the first error, and the totals.
class CopyState {
 public:
  CopyState(std::vector<Piece> pieces, const CopyOptions& o) : pieces_(std::move(pieces)), o_(o) {}

  // The next piece, or nullptr once all are taken, an error was met or a cancel came.
  const Piece* Next() {
    if (failed_.load() || (o_.cancel != nullptr && o_.cancel->load())) return nullptr;
    size_t i = next_.fetch_add(1);
    return i < pieces_.size() ? &pieces_[i] : nullptr;
  }
  void Fail(Status s) EXCLUDES(mu_) {
    MutexLock lock(mu_);
    if (error_.ok()) error_ = std::move(s);
    failed_ = true;
  }
  void Done(uint64_t data, uint64_t written) {
    data_.fetch_add(data);
    written_.fetch_add(written);
    if (o_.progress) o_.progress(data);
  }
  Result<CopyStats> Outcome() EXCLUDES(mu_) {
    MutexLock lock(mu_);
    if (!error_.ok()) return error_;
    if (o_.cancel != nullptr && o_.cancel->load()) return Status::Cancelled("interrupted");
    return CopyStats{data_.load(), written_.load()};
  }

 private:
  const std::vector<Piece> pieces_;
  const CopyOptions& o_;
  std::atomic<size_t> next_{0};
  std::atomic<bool> failed_{false};
  std::atomic<uint64_t> data_{0}, written_{0};
  Mutex mu_;
  Status error_ GUARDED_BY(mu_);
};

void CopyLane(const DiskImage& image, ImageWriter& out, unsigned lane, uint64_t piece_bytes,
              uint64_t block, CopyState& state) {
  std::vector<uint8_t> buf(piece_bytes);
  while (const Piece* p = state.Next()) {
    if (!p->data) {
      Status s = out.Zero(lane, p->offset, p->length);
      if (!s.ok()) state.Fail(std::move(s));
      continue;
    }
    std::span<uint8_t> bytes(buf.data(), p->length);
    Status s = image.Read(p->offset, bytes);
    if (!s.ok()) {
      state.Fail(std::move(s));
      return;
    }
    Result<uint64_t> written = WriteNonZero(out, lane, p->offset, block, bytes);
    if (!written.ok()) {
      state.Fail(written.status());
      return;
    }
    state.Done(p->length, *written);
  }
}

}  // namespace

Result<uint64_t> WriteNonZero(ImageWriter& out, unsigned lane, uint64_t offset, uint64_t block,
                              std::span<const uint8_t> buf) {
  uint64_t written = 0;
  size_t i = 0;
  while (i < buf.size()) {
    // Blocks follow the disk's grid, so a skipped block is whole clusters.
    auto block_end = [&](size_t at) {
      return std::min<size_t>(buf.size(), (offset + at) / block * block + block - offset);
    };
    const bool zero = AllZero(buf.data() + i, block_end(i) - i);
    size_t j = block_end(i);
    while (j < buf.size() && AllZero(buf.data() + j, block_end(j) - j) == zero) j = block_end(j);
    if (!zero) {
      BFS_RETURN_IF_ERROR(out.Write(lane, offset + i, buf.subspan(i, j - i)));
      written += j - i;
    } else if (!out.zeroed_at_start()) {
      BFS_RETURN_IF_ERROR(out.Zero(lane, offset + i, j - i));
    }
    i = j;
  }
  return written;
}

uint64_t BytesToRead(const DiskImage& image, const ImageWriter& out, const CopyOptions& o) {
  const uint64_t block = std::max(kZeroBlock, out.grain());
  uint64_t n = 0;
  for (const Piece& p : PlanPieces(image, o.piece_bytes, block, false)) n += p.length;
  return n;
}

Result<CopyStats> CopyImage(const DiskImage& image, ImageWriter& out, const CopyOptions& o) {
  const uint64_t block = std::max(kZeroBlock, out.grain());
  if (o.piece_bytes == 0 || o.piece_bytes % block != 0 || block % out.grain() != 0) {
    return Status::InvalidArgument("copy piece size must be a multiple of 64 KiB and of " +
                                   out.path() + "'s grain");
  }
  CopyState state(PlanPieces(image, o.piece_bytes, block, !out.zeroed_at_start()), o);
  std::vector<std::thread> threads;
  for (unsigned lane = 1; lane < out.lanes(); ++lane) {
    try {
      threads.emplace_back([&, lane] { CopyLane(image, out, lane, o.piece_bytes, block, state); });
    } catch (const std::system_error&) {
      break;  // no more threads to be had: the lanes started do the work
    }
  }
  CopyLane(image, out, 0, o.piece_bytes, block, state);
  for (auto& t : threads) t.join();
  return state.Outcome();
}

}  // namespace backupfs
