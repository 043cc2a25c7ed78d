#include "backupfs/verify.h"

#include "stream/forwarding_storage.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <vector>

#include "common/thread_annotations.h"
#include "stream/checksum.h"
#include "stream/frame.h"
#include "stream/local_storage.h"
#include "stream/lz4_chunk.h"
#include "stream/reader.h"
#include "stream/scanner.h"
#include "stream/trailer.h"

namespace backupfs {
namespace {

// --- One pass over a data file -------------------------------------------------------------

constexpr uint64_t kPassRead = 8u << 20;      // one sequential read of the pass
constexpr uint64_t kEnds = 1u << 20;          // head and tail, kept whole (metadata, identity)
constexpr uint64_t kMaxTail = 64u << 20;      // a compression trailer kept whole
constexpr uint64_t kMaxSkeleton = 64u << 20;  // frame headers kept; past this, read again

// A stored file read front to back once: its tail, then its head, then everything in between
// in kPassRead reads, summed (adler32) in file order. The driver says which ranges are payload
// (MarkPayload) and which it needs next (Hold); the rest of what the pass goes by (frame
// headers, terminators, trailers: the "skeleton") is kept for the checks that run afterwards.
// A read of bytes neither held nor kept is fetched again from the store and counted.
// Thread-safe (one mutex); verify drives it from one thread.
class PassFile final : public StoredFile {
 public:
  static Result<std::unique_ptr<PassFile>> Open(std::unique_ptr<StoredFile> remote) {
    std::unique_ptr<PassFile> p(new PassFile(std::move(remote)));
    BFS_RETURN_IF_ERROR(p->FetchEnds());
    return p;
  }

  uint64_t size() const override { return size_; }
  const std::string& name() const override { return remote_->name(); }
  const std::string& version() const override { return remote_->version(); }
  Status ReadAt(uint64_t offset, std::span<uint8_t> out) const override EXCLUDES(mu_);

  // [begin, end) is payload: dropped once the pass has gone by. Ascending, and given before a
  // Hold() moves past it.
  void MarkPayload(uint64_t begin, uint64_t end) EXCLUDES(mu_) {
    MutexLock lock(mu_);
    begin = std::max(begin, marked_end_);
    if (end <= begin) return;
    marks_.emplace_back(begin, end);
    marked_end_ = end;
  }

  // Reads on until [begin, end) is held; what lies before `begin` is let go (only the
  // skeleton of it is kept): every payload below `begin` must have been marked.
  Status Hold(uint64_t begin, uint64_t end) EXCLUDES(mu_) {
    MutexLock lock(mu_);
    end = std::min(end, tail_begin_);
    for (;;) {
      ReleaseBelow(begin);
      if (pos_ >= end) return Status::Ok();
      BFS_RETURN_IF_ERROR(FetchNext());
    }
  }

  // Moves the start of the kept tail down to `begin` (a compression trailer larger than the
  // tail read at open), when the pass has not reached it; else its reads fall back.
  Status ExtendTail(uint64_t begin) EXCLUDES(mu_) {
    MutexLock lock(mu_);
    if (begin >= tail_begin_ || begin < pos_ || tail_begin_ - begin > kMaxTail) {
      return Status::Ok();
    }
    std::vector<uint8_t> more(tail_begin_ - begin);
    BFS_RETURN_IF_ERROR(remote_->ReadAt(begin, more));
    more.insert(more.end(), tail_.begin(), tail_.end());
    tail_ = std::move(more);
    tail_begin_ = begin;
    return Status::Ok();
  }

  // Reads the rest of the file; returns the adler32 of all of it.
  Result<uint32_t> Finish() EXCLUDES(mu_) {
    {
      MutexLock lock(mu_);
      if (finished_) return adler_.value();
    }
    BFS_RETURN_IF_ERROR(Hold(size_, size_));
    MutexLock lock(mu_);
    ReleaseBelow(tail_begin_);
    adler_.Update(tail_);
    finished_ = true;
    return adler_.value();
  }

  // Bytes read beyond the one pass.
  uint64_t extra_bytes() const EXCLUDES(mu_) {
    MutexLock lock(mu_);
    return extra_bytes_;
  }

 private:
  explicit PassFile(std::unique_ptr<StoredFile> remote)
      : remote_(std::move(remote)), size_(remote_->size()) {}

  Status FetchEnds() EXCLUDES(mu_) {
    MutexLock lock(mu_);
    tail_begin_ = size_ > kEnds ? size_ - kEnds : 0;
    tail_.resize(size_ - tail_begin_);
    BFS_RETURN_IF_ERROR(remote_->ReadAt(tail_begin_, tail_));
    head_.resize(std::min(kEnds, tail_begin_));
    BFS_RETURN_IF_ERROR(remote_->ReadAt(0, head_));
    adler_.Update(head_);
    pos_ = window_begin_ = head_.size();
    return Status::Ok();
  }

  Status FetchNext() REQUIRES(mu_) {
    BFS_RETURN_IF_ERROR(error_);
    std::vector<uint8_t> block(std::min(kPassRead, tail_begin_ - pos_));
    error_ = remote_->ReadAt(pos_, block);
    BFS_RETURN_IF_ERROR(error_);
    remote_->WillNeed(pos_ + block.size(), kPassRead);
    adler_.Update(block);
    pos_ += block.size();
    blocks_.push_back(std::move(block));
    return Status::Ok();
  }

  // Drops the blocks that end at or before `offset`, keeping their skeleton.
  void ReleaseBelow(uint64_t offset) REQUIRES(mu_) {
    while (!blocks_.empty() && window_begin_ + blocks_.front().size() <= offset) {
      KeepSkeleton(window_begin_, blocks_.front());
      window_begin_ += blocks_.front().size();
      blocks_.pop_front();
    }
  }

  void KeepSkeleton(uint64_t begin, const std::vector<uint8_t>& block) REQUIRES(mu_) {
    const uint64_t end = begin + block.size();
    uint64_t at = begin;
    for (const auto& [b, e] : marks_) {
      if (b >= end) break;
      if (b > at) Keep(at, std::span(block).subspan(at - begin, b - at));
      at = std::max(at, e);
    }
    if (at < end) Keep(at, std::span(block).subspan(at - begin));
    while (!marks_.empty() && marks_.front().second <= end) marks_.pop_front();
  }

  void Keep(uint64_t offset, std::span<const uint8_t> bytes) REQUIRES(mu_) {
    if (skeleton_bytes_ + bytes.size() > kMaxSkeleton) return;  // read again if needed
    skeleton_bytes_ += bytes.size();
    skeleton_.emplace(offset, std::vector<uint8_t>(bytes.begin(), bytes.end()));
  }

  // Copies what is held at `offset` into the start of `out`; 0 when nothing is.
  size_t CopyHeld(uint64_t offset, std::span<uint8_t> out) const REQUIRES(mu_);
  // The first held byte after `offset` (size_ when none).
  uint64_t NextHeld(uint64_t offset) const REQUIRES(mu_);

  const std::unique_ptr<StoredFile> remote_;
  const uint64_t size_;
  mutable Mutex mu_;
  std::vector<uint8_t> head_ GUARDED_BY(mu_);  // [0, head_.size())
  uint64_t tail_begin_ GUARDED_BY(mu_) = 0;
  std::vector<uint8_t> tail_ GUARDED_BY(mu_);  // [tail_begin_, size_)
  uint64_t window_begin_ GUARDED_BY(mu_) = 0;
  std::deque<std::vector<uint8_t>> blocks_ GUARDED_BY(mu_);  // [window_begin_, pos_)
  uint64_t pos_ GUARDED_BY(mu_) = 0;                         // where the pass has read to
  Status error_ GUARDED_BY(mu_);                             // a failed pass read, sticky
  Adler32 adler_ GUARDED_BY(mu_);
  bool finished_ GUARDED_BY(mu_) = false;
  std::deque<std::pair<uint64_t, uint64_t>> marks_ GUARDED_BY(mu_);  // payload not yet gone by
  uint64_t marked_end_ GUARDED_BY(mu_) = 0;
  std::map<uint64_t, std::vector<uint8_t>> skeleton_ GUARDED_BY(mu_);
  uint64_t skeleton_bytes_ GUARDED_BY(mu_) = 0;
  mutable uint64_t extra_bytes_ GUARDED_BY(mu_) = 0;
};

size_t PassFile::CopyHeld(uint64_t offset, std::span<uint8_t> out) const {
  auto copy = [&](std::span<const uint8_t> from, uint64_t from_offset) -> size_t {
    const size_t n = std::min<uint64_t>(out.size(), from.size() - (offset - from_offset));
    std::memcpy(out.data(), from.data() + (offset - from_offset), n);
    return n;
  };
  if (offset < head_.size()) return copy(head_, 0);
  if (offset >= tail_begin_) return copy(tail_, tail_begin_);
  if (offset >= window_begin_ && offset < pos_) {
    uint64_t at = window_begin_;
    for (const std::vector<uint8_t>& b : blocks_) {
      if (offset < at + b.size()) return copy(b, at);
      at += b.size();
    }
  }
  auto it = skeleton_.upper_bound(offset);
  if (it == skeleton_.begin()) return 0;
  --it;
  if (offset >= it->first + it->second.size()) return 0;
  return copy(it->second, it->first);
}

uint64_t PassFile::NextHeld(uint64_t offset) const {
  uint64_t next = std::max(offset + 1, tail_begin_);
  if (!blocks_.empty() && window_begin_ > offset) next = std::min(next, window_begin_);
  auto it = skeleton_.upper_bound(offset);
  if (it != skeleton_.end()) next = std::min(next, it->first);
  return next;
}

Status PassFile::ReadAt(uint64_t offset, std::span<uint8_t> out) const {
  if (offset > size_ || out.size() > size_ - offset) return remote_->ReadAt(offset, out);
  MutexLock lock(mu_);
  for (size_t done = 0; done < out.size();) {
    const uint64_t at = offset + done;
    std::span<uint8_t> rest = out.subspan(done);
    size_t n = CopyHeld(at, rest);
    if (n == 0) {
      n = static_cast<size_t>(std::min<uint64_t>(rest.size(), NextHeld(at) - at));
      BFS_RETURN_IF_ERROR(remote_->ReadAt(at, rest.first(n)));
      extra_bytes_ += n;
    }
    done += n;
  }
  return Status::Ok();
}

// The pass as a StoredFile that a reader may own (the pass outlives the readers).
class PassView final : public StoredFile {
 public:
  explicit PassView(const PassFile& pass) : pass_(pass) {}
  uint64_t size() const override { return pass_.size(); }
  const std::string& name() const override { return pass_.name(); }
  const std::string& version() const override { return pass_.version(); }
  Status ReadAt(uint64_t offset, std::span<uint8_t> out) const override {
    return pass_.ReadAt(offset, out);
  }

 private:
  const PassFile& pass_;
};

// The saveset as a reader of the file being verified sees it: that file is the pass, its
// sidecar the bytes read once before (or an index to read it by); nothing is written.
class PassStorage final : public ForwardingStorage {
 public:
  PassStorage(const Storage& saveset, std::string name, const PassFile& pass,
              Result<std::string> sidecar)
      : ForwardingStorage(saveset),
        name_(std::move(name)),
        idx_name_(name_ + ".idx"),
        pass_(pass),
        sidecar_(std::move(sidecar)) {}

  Result<std::unique_ptr<StoredFile>> Open(std::string_view n) const override {
    if (n == name_) return std::unique_ptr<StoredFile>(new PassView(pass_));
    return ForwardingStorage::Open(n);
  }
  Result<std::string> ReadAll(std::string_view n, uint64_t max_size) const override {
    if (n == idx_name_) return sidecar_;
    return ForwardingStorage::ReadAll(n, max_size);
  }

 private:
  const std::string name_;
  const std::string idx_name_;
  const PassFile& pass_;
  const Result<std::string> sidecar_;
};

// --- What the pass checks as it goes --------------------------------------------------------

// The outcome of each chunk checked during the pass, found again by the chunk's fields (the
// checks afterwards go by the reader's index, which names the same chunks when the file is
// intact). A hash per chunk checked, failures in full.
class CheckedChunks {
 public:
  static uint64_t Key(const Chunk& c) {
    const uint64_t fields[] = {c.offset,   c.length,     c.file_offset, c.stored_size,
                               c.checksum, c.compressed, c.has_checksum};
    return Xxh3(std::span(reinterpret_cast<const uint8_t*>(fields), sizeof fields));
  }
  void Add(const Chunk& c, Status s) {
    if (s.ok()) {
      ok_.push_back(Key(c));
    } else {
      failed_.emplace(Key(c), std::move(s));
    }
  }
  void Seal() { std::sort(ok_.begin(), ok_.end()); }
  // The pass's outcome for `c`, or nullopt when the pass did not check it.
  std::optional<Status> Find(const Chunk& c) const {
    const uint64_t key = Key(c);
    if (std::binary_search(ok_.begin(), ok_.end(), key)) return Status::Ok();
    auto it = failed_.find(key);
    if (it != failed_.end()) return it->second;
    return std::nullopt;
  }

 private:
  std::vector<uint64_t> ok_;
  std::map<uint64_t, Status> failed_;
};

bool NeedsCheck(const Chunk& c) {
  return c.kind == ChunkKind::kData && (c.has_checksum || c.compressed);
}

// A chunk's stored bytes that no later check reads: an lz4 frame's header is read again by
// the structure scan (the content size of each lz4 frame of a split data frame).
void MarkChunk(PassFile& pass, const Chunk& c) {
  const uint64_t head = c.compressed ? std::min<uint64_t>(c.stored_size, kLz4MaxHeaderSize) : 0;
  pass.MarkPayload(c.file_offset + head, c.file_offset + c.stored_size);
}

// The pass over a file whose chunks are known (its sidecar, or a scan): each chunk is checked
// as the pass reaches it, in file order.
Status PassByIndex(PassFile& pass, StreamReader& reader, CheckedChunks& checked) {
  std::vector<const Chunk*> chunks;
  for (const Chunk& c : reader.index().chunks) {
    if (c.kind == ChunkKind::kData) chunks.push_back(&c);
  }
  std::sort(chunks.begin(), chunks.end(),
            [](const Chunk* a, const Chunk* b) { return a->file_offset < b->file_offset; });
  for (const Chunk* c : chunks) {
    MarkChunk(pass, *c);
    if (!NeedsCheck(*c)) continue;
    BFS_RETURN_IF_ERROR(pass.Hold(c->file_offset, c->file_offset + c->stored_size));
    checked.Add(*c, reader.VerifyChunk(*c));
  }
  return Status::Ok();
}

// Finds the frames of a file without an index as the pass brings them (header after header,
// the lz4 frame sizes from the compression trailer), marks their payload and checks each lz4
// frame with `verifier`. A prediction: the scan afterwards decides; a walk that meets
// something it does not understand just stops (the checks then read what they need again).
class FrameWalk {
 public:
  FrameWalk(PassFile& pass, StreamReader* verifier, CheckedChunks& checked)
      : pass_(pass), verifier_(verifier), checked_(checked) {}

  void Run() {
    uint64_t begin = 0;
    auto meta = ReadMetadata(pass_, &begin);
    if (!meta.ok() || (meta->compressed() && !ReadTrailer(*meta, begin))) return;
    compressed_ = meta->compressed();
    limit_ =
        compressed_ ? stop_ : pass_.size() - std::min<uint64_t>(pass_.size(), kFrameHeaderSize);
    // Each frame moves on by at least a header: bounded by the file's size.
    for (uint64_t pos = begin; pos < limit_ && pos + kFrameHeaderSize <= pass_.size();) {
      auto next = Frame(pos);
      if (!next) return;
      pos = *next;
    }
  }

 private:
  bool ReadTrailer(const StreamMetadata& meta, uint64_t begin) {
    auto stop = FramesEnd(pass_, meta, begin);
    if (!stop.ok() || !pass_.ExtendTail(*stop).ok()) return false;
    stop_ = *stop;
    const uint64_t json_at = stop_ + kFrameHeaderSize;
    const uint64_t json_end = pass_.size() - kFrameHeaderSize - 2;
    if (json_end < json_at || json_end - json_at > kMaxTail) return false;
    std::string json(json_end - json_at, '\0');
    if (!pass_.ReadAt(json_at, std::span(reinterpret_cast<uint8_t*>(json.data()), json.size()))
             .ok()) {
      return false;
    }
    auto trailer = DecodeTrailer(json, pass_.name(), json_at);
    if (!trailer.ok()) return false;
    trailer_ = std::move(trailer).value();
    return true;
  }

  // The frame at `pos`: where the next one starts, nullopt at the end or on a surprise.
  std::optional<uint64_t> Frame(uint64_t pos) {
    std::array<uint8_t, kFrameHeaderSize> bytes;
    if (!pass_.Hold(pos, pos + bytes.size()).ok() || !pass_.ReadAt(pos, bytes).ok()) return {};
    auto h = DecodeFrameHeader(bytes, pass_.name(), pos);
    if (!h.ok() || h->kind == FrameKind::kStop) return {};
    if (h->kind == FrameKind::kZero) return pos + kFrameHeaderSize;
    if (h->kind != FrameKind::kData) return {};
    const uint64_t payload = pos + kFrameHeaderSize;
    if (!compressed_) {
      if (h->length > limit_ || payload > limit_ - h->length) return {};
      pass_.MarkPayload(payload, payload + h->length);
      return payload + h->length + 2;
    }
    if (frames_ >= trailer_.size()) return {};
    const TrailerEntry& entry = trailer_[frames_++];
    if (entry.total() > limit_ || payload > limit_ - entry.total()) return {};
    if (!Lz4Frames(*h, entry, payload)) return {};
    return payload + entry.total() + 2;
  }

  // Checks each lz4 frame of a compressed data frame; false on a surprise.
  bool Lz4Frames(const FrameHeader& h, const TrailerEntry& entry, uint64_t payload) {
    Chunk c;
    c.compressed = true;
    c.offset = h.start;
    c.file_offset = payload;
    for (uint64_t stored : entry.chunk_sizes) {
      c.stored_size = stored;
      auto length = Lz4Length(h, entry, c.file_offset, stored);
      if (!length || *length > kMaxChunkLength || stored > Lz4MaxChunkStoredSize(*length)) {
        return false;
      }
      c.length = *length;
      MarkChunk(pass_, c);
      if (c.length > 0 && verifier_ != nullptr) {
        if (!pass_.Hold(c.file_offset, c.file_offset + stored).ok()) return false;
        checked_.Add(c, verifier_->VerifyChunk(c));
      }
      c.offset += c.length;
      c.file_offset += stored;
    }
    return true;
  }

  // An lz4 frame's content size: the data frame's length when it is the only one, else what
  // its header records.
  std::optional<uint64_t> Lz4Length(const FrameHeader& h, const TrailerEntry& entry, uint64_t at,
                                    uint64_t stored) {
    if (!entry.split && entry.chunk_sizes.size() == 1) return h.length;
    std::array<uint8_t, kLz4MaxHeaderSize> head{};
    auto bytes = std::span(head).first(std::min<uint64_t>(stored, head.size()));
    if (!pass_.Hold(at, at + bytes.size()).ok() || !pass_.ReadAt(at, bytes).ok()) return {};
    auto length = Lz4ChunkContentSize(bytes, pass_.name());
    if (!length.ok()) return {};
    return *length;
  }

  PassFile& pass_;
  StreamReader* verifier_;
  CheckedChunks& checked_;
  bool compressed_ = false;
  uint64_t stop_ = 0;   // compressed: where the frames end
  uint64_t limit_ = 0;  // no payload reaches past it
  std::vector<TrailerEntry> trailer_;
  size_t frames_ = 0;  // data frames walked
};

ReaderOptions VerifyReaderOptions() {
  ReaderOptions options;
  options.cache_bytes = 0;
  options.decode_ahead = false;
  return options;
}

// A reader whose only use is VerifyChunk() on chunks the walk finds: its index is empty (and
// so accepted without a scan), since VerifyChunk needs only the chunk and the file.
Result<std::unique_ptr<StreamReader>> ChunkVerifier(const Storage& saveset, const std::string& name,
                                                    PassFile& pass) {
  uint64_t begin = 0;
  BFS_ASSIGN_OR_RETURN(StreamMetadata meta, ReadMetadata(pass, &begin));
  StreamIndex empty;
  BFS_ASSIGN_OR_RETURN(empty.identity, IdentifyDataFile(pass));
  empty.compressed = meta.compressed();
  const std::vector<uint8_t> bytes = EncodeIndex(empty);
  PassStorage view(saveset, name, pass, std::string(bytes.begin(), bytes.end()));
  return StreamReader::Open(view, name, VerifyReaderOptions());
}

// The pass: every chunk that can be checked is, as its bytes go by. Returns the reader of the
// sidecar when it was opened for the pass (the checks afterwards use it again).
std::unique_ptr<StreamReader> RunPass(const Storage& saveset, const std::string& name,
                                      PassFile& pass, const Result<std::string>& sidecar,
                                      CheckedChunks& checked) {
  std::unique_ptr<StreamReader> indexed;
  if (sidecar.status().code() != StatusCode::kNotFound) {
    PassStorage view(saveset, name, pass, sidecar);
    auto reader = StreamReader::Open(view, name, VerifyReaderOptions());
    if (reader.ok()) indexed = std::move(reader).value();
  }
  if (indexed) {
    (void)PassByIndex(pass, *indexed, checked);
  } else {
    auto verifier = ChunkVerifier(saveset, name, pass);
    FrameWalk(pass, verifier.ok() ? verifier->get() : nullptr, checked).Run();
  }
  checked.Seal();
  return indexed;
}

// --- The checks, reported in order --------------------------------------------------------

// Compares the `.chksum` file, when there is one, with the adler32 the pass summed.
void CheckAdler(const Storage& saveset, const std::string& name, const Result<uint32_t>& actual,
                VerifyReporter& reporter, VerifySummary* summary, std::string* detail) {
  const std::string sum_name = name + ".chksum";
  Result<uint32_t> expected = ReadChecksumFile(saveset, sum_name);
  if (expected.status().code() == StatusCode::kNotFound) {
    *detail += ", no .chksum";
    return;
  }
  const Status s = expected.ok() ? actual.status() : expected.status();
  if (!s.ok()) {
    reporter.Problem(s.message());
    ++summary->problems;
  } else if (*actual != *expected) {
    reporter.Problem(saveset.Describe(name) + ": adler32 is " + std::to_string(*actual) + ", " +
                     saveset.Describe(sum_name) + " says " + std::to_string(*expected));
    ++summary->problems;
  } else {
    *detail += ", adler32 ok";
  }
}

// Checks every chunk that can be: by the pass's outcome, or by reading it now.
void CheckChunks(StreamReader& reader, const CheckedChunks& checked, VerifyReporter& reporter,
                 VerifySummary* summary, std::string* detail) {
  uint64_t count = 0;
  for (const Chunk& c : reader.index().chunks) {
    if (!NeedsCheck(c)) continue;
    std::optional<Status> s = checked.Find(c);
    if (!s) s = reader.VerifyChunk(c);
    if (!s->ok()) {
      reporter.Problem(s->message());
      ++summary->problems;
      continue;
    }
    ++count;
    ++summary->chunks_checked;
    summary->bytes_checked += c.length;
  }
  *detail += ", " + std::to_string(count) + " chunks checked";
}

// What the index says and whether its chunks carry checksums; false when the file stops here.
bool CheckIndex(StreamReader& r, const StreamLayout& layout, VerifyReporter& reporter,
                VerifySummary* summary, std::string* detail) {
  if (!r.index_problem().empty()) {
    reporter.Problem(Status::Corruption(r.index_problem()).message());
    ++summary->problems;
  } else if (r.index_origin() == IndexOrigin::kSidecar) {
    Status s = CheckIndexMatchesLayout(r.index(), layout, r.path());
    if (!s.ok()) {
      reporter.Problem(s.message());
      ++summary->problems;
      return false;
    }
    *detail += ", index ok";
  } else {
    *detail += ", no index";
  }
  const auto& chunks = r.index().chunks;
  if (!r.meta().compressed() &&
      std::none_of(chunks.begin(), chunks.end(), [](const Chunk& c) { return c.has_checksum; }) &&
      std::any_of(chunks.begin(), chunks.end(),
                  [](const Chunk& c) { return c.kind == ChunkKind::kData; })) {
    reporter.Note(r.path() + ": no checksums cover its data (an index built by scanning)");
  }
  return true;
}

// The checks after the pass, in the order they are reported.
void Confirm(const Storage& saveset, const std::string& name, PassFile& pass,
             const Result<std::string>& sidecar, std::unique_ptr<StreamReader> reader,
             const CheckedChunks& checked, VerifyReporter& reporter, VerifySummary* summary) {
  const uint64_t problems_before = summary->problems;
  auto fail = [&](const Status& s) {
    reporter.Problem(s.message());
    ++summary->problems;
  };
  // The rest of the file first, so that the scan finds its last frames kept.
  const Result<uint32_t> adler = pass.Finish();
  Result<StreamLayout> layout = ScanStream(pass);
  if (!layout.ok()) return fail(layout.status());
  std::string detail = std::to_string(layout->frames.size()) + " frames";
  CheckAdler(saveset, name, adler, reporter, summary, &detail);
  if (!reader) {
    PassStorage view(saveset, name, pass, sidecar);
    auto opened = StreamReader::Open(view, name, VerifyReaderOptions());
    if (!opened.ok()) return fail(opened.status());
    reader = std::move(opened).value();
  }
  if (!CheckIndex(*reader, *layout, reporter, summary, &detail)) return;
  CheckChunks(*reader, checked, reporter, summary, &detail);
  if (summary->problems == problems_before) reporter.FileOk(pass.name(), detail);
}

}  // namespace

void VerifyDataFile(const Storage& saveset, const std::string& name, VerifyReporter& reporter,
                    VerifySummary* summary) {
  ++summary->files;
  Result<std::unique_ptr<StoredFile>> file = saveset.Open(name);
  Result<std::unique_ptr<PassFile>> pass =
      file.ok() ? PassFile::Open(std::move(file).value()) : file.status();
  if (!pass.ok()) {
    reporter.Problem(pass.status().message());
    ++summary->problems;
    return;
  }
  // Read once, with the bound the reader applies (a sidecar needs at most 48 bytes a byte).
  const Result<std::string> sidecar =
      saveset.ReadAll(name + ".idx", 64 + 48 * ((*pass)->size() + 1));
  CheckedChunks checked;
  std::unique_ptr<StreamReader> reader = RunPass(saveset, name, **pass, sidecar, checked);
  Confirm(saveset, name, **pass, sidecar, std::move(reader), checked, reporter, summary);
  const uint64_t extra = (*pass)->extra_bytes();
  summary->bytes_reread += extra;
  if (extra > 0) {
    reporter.Note((*pass)->name() + ": " + std::to_string(extra) +
                  " bytes read twice (its frames are not where its index or headers said)");
  }
}

void VerifyDataFile(const std::string& path, VerifyReporter& reporter, VerifySummary* summary) {
  const std::filesystem::path p(path);
  VerifyDataFile(*OpenLocalStorage(p.parent_path().string()), p.filename().string(), reporter,
                 summary);
}

Result<VerifySummary> VerifySaveset(const Storage& saveset, const std::string& disk,
                                    VerifyReporter& reporter) {
  BFS_ASSIGN_OR_RETURN(SavesetListing listing, ListSaveset(saveset, disk));
  VerifySummary summary;
  for (const std::string& p : listing.partial_files) {
    reporter.Problem(saveset.Describe(p) + ": leftover of an interrupted backup");
    ++summary.problems;
  }
  for (const std::string& o : listing.orphan_sidecars) {
    reporter.Note(saveset.Describe(o) + ": its data file is missing");
  }
  if (listing.data_files.empty()) {
    reporter.Problem(saveset.address() + ": no data files" +
                     (disk.empty() ? "" : " for disk " + disk));
    ++summary.problems;
  }
  for (const DataFileName& f : listing.data_files) {
    VerifyDataFile(saveset, f.file, reporter, &summary);
  }
  return summary;
}

Result<VerifySummary> VerifySaveset(const std::string& dir, const std::string& disk,
                                    VerifyReporter& reporter) {
  return VerifySaveset(*OpenLocalStorage(dir), disk, reporter);
}

}  // namespace backupfs
