#include "capture/nbd_copy.h"

#include <algorithm>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace backupfs {
namespace {

enum class SlotState { kFree, kInFlight, kDone };

// Reads are issued in order into a ring of slots (read k uses slot k % window) and delivered
// in the same order, so completions may arrive in any order and buffers are reused.
//
// Threads: an I/O thread owns the NBD handle for the whole copy (issues reads, runs nbd_poll,
// and runs the completion callbacks); the caller's thread runs the consumer. So NBD replies
// keep arriving while the consumer writes and hashes. They share only the slot states and the
// flags below, all protected by mu_; neither holds mu_ while calling into libnbd or the
// consumer.
class Pipeline {
  // One read and its buffer. Its address is the completion callback's user data, so slots
  // never move while reads are in flight.
  struct Slot {
    Pipeline* owner = nullptr;
    std::unique_ptr<uint8_t[]> buffer;   // request_size bytes, allocated on first use
    uint64_t offset = 0;                 // offset and length: written by the I/O thread while
    size_t length = 0;                   // kFree, read by the consumer once kDone
    SlotState state = SlotState::kFree;  // protected by owner->mu_
    int error = 0;                       // protected by owner->mu_
  };

 public:
  Pipeline(NbdSource& source, std::span<const Extent> frames, const CopyOptions& options,
           const ChunkConsumer& consume)
      : source_(source),
        frames_(frames),
        request_(std::min(options.request_size, source.max_block())),
        slots_(options.window),
        consume_(consume),
        options_(options) {
    for (Slot& slot : slots_) slot.owner = this;
  }

  Status Run() {
    std::thread io([this] { IoThread(); });
    Status s = Consume();
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    io.join();
    return s;
  }

 private:
  // The caller's thread: hands completed reads to the consumer in issue order.
  Status Consume() {
    for (uint64_t delivered = 0;; ++delivered) {
      Slot& head = slots_[delivered % slots_.size()];
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return head.state == SlotState::kDone || io_finished_; });
        if (head.state != SlotState::kDone) return io_status_;  // Ok: everything delivered
        if (head.error != 0) {
          return Status::FromErrno(What(head) + " on " + source_.name(), head.error);
        }
      }
      if (options_.cancelled && options_.cancelled()) {
        return Status::Cancelled("stopped on request at offset " + std::to_string(head.offset) +
                                 " of " + source_.name());
      }
      BFS_RETURN_IF_ERROR(consume_(head.offset, {head.buffer.get(), head.length}));
      if (options_.delivered) options_.delivered(head.length);
      {
        std::lock_guard<std::mutex> lock(mu_);
        head.state = SlotState::kFree;
      }
      cv_.notify_all();
    }
  }

  void IoThread() {
    Status s = IssueAndPoll();
    // Reads still in flight point into slots_: wait for them (a dead connection has already
    // retired its commands).
    nbd_handle* h = source_.handle();
    while (nbd_aio_in_flight(h) > 0 && nbd_poll(h, -1) != -1) {
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      io_status_ = s;
      io_finished_ = true;
    }
    cv_.notify_all();
  }

  Status IssueAndPoll() {
    nbd_handle* h = source_.handle();
    while (true) {
      BFS_RETURN_IF_ERROR(Fill());
      if (nbd_aio_in_flight(h) > 0) {
        if (nbd_poll(h, -1) == -1) return source_.Error("nbd_poll");
        continue;
      }
      // Nothing in flight: all read, stopped, or every slot waits for the consumer.
      std::unique_lock<std::mutex> lock(mu_);
      if (stop_ || exhausted_) return Status::Ok();
      cv_.wait(lock, [&] { return stop_ || NextSlot().state == SlotState::kFree; });
    }
  }

  // Issues reads until the window is full or every data extent has been asked for.
  Status Fill() {
    while (true) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stop_ || NextSlot().state != SlotState::kFree) return Status::Ok();
      }
      if (!has_piece_ && !NextPiece()) return Status::Ok();
      BFS_RETURN_IF_ERROR(Issue(NextSlot()));
    }
  }

  Status Issue(Slot& slot) {
    if (!slot.buffer) slot.buffer.reset(new uint8_t[request_]);
    slot.offset = piece_offset_;
    slot.length = piece_length_;
    {
      std::lock_guard<std::mutex> lock(mu_);
      slot.state = SlotState::kInFlight;
      slot.error = 0;
    }
    nbd_completion_callback cb = {
        .callback = &Pipeline::OnComplete, .user_data = &slot, .free = nullptr};
    if (nbd_aio_pread(source_.handle(), slot.buffer.get(), slot.length, slot.offset, cb, 0) == -1) {
      return source_.Error(What(slot));
    }
    has_piece_ = false;
    ++issued_;
    return Status::Ok();
  }

  // Runs inside nbd_poll on the I/O thread: records the outcome and wakes the consumer.
  // Returning 1 retires the command.
  static int OnComplete(void* user, int* error) {
    Slot* slot = static_cast<Slot*>(user);
    {
      std::lock_guard<std::mutex> lock(slot->owner->mu_);
      slot->error = *error;
      slot->state = SlotState::kDone;
    }
    slot->owner->cv_.notify_all();
    return 1;
  }

  // Moves the cursor to the next piece of a data extent; false at the end.
  bool NextPiece() {
    for (; extent_ < frames_.size(); ++extent_, pos_ = 0) {
      const Extent& e = frames_[extent_];
      if (e.kind == ExtentKind::kData && pos_ < e.length) {
        piece_offset_ = e.offset + pos_;
        piece_length_ = static_cast<size_t>(std::min(request_, e.length - pos_));
        pos_ += piece_length_;
        has_piece_ = true;
        return true;
      }
    }
    exhausted_ = true;
    return false;
  }

  Slot& NextSlot() { return slots_[issued_ % slots_.size()]; }

  static std::string What(const Slot& slot) {
    return "read of " + std::to_string(slot.length) + " bytes at " + std::to_string(slot.offset);
  }

  NbdSource& source_;
  const std::span<const Extent> frames_;
  const uint64_t request_;
  std::vector<Slot> slots_;
  const ChunkConsumer& consume_;
  const CopyOptions& options_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;         // protected by mu_: the consumer is done (or failed)
  bool io_finished_ = false;  // protected by mu_: the I/O thread has returned io_status_
  Status io_status_;          // protected by mu_

  // I/O thread only.
  uint64_t issued_ = 0;     // reads issued so far
  size_t extent_ = 0;       // cursor: the extent being split into reads
  uint64_t pos_ = 0;        // cursor: bytes of it already asked for
  bool has_piece_ = false;  // piece_*: the next read, not issued yet
  bool exhausted_ = false;  // every piece has been issued
  uint64_t piece_offset_ = 0;
  size_t piece_length_ = 0;
};

Status CheckFrames(const NbdSource& source, std::span<const Extent> frames) {
  uint64_t prev_end = 0;
  for (const Extent& e : frames) {
    if (e.offset < prev_end || e.length > source.size() || e.offset > source.size() - e.length) {
      return Status::InvalidArgument(
          "extent [" + std::to_string(e.offset) + ", +" + std::to_string(e.length) + ") of " +
          source.name() + " is out of order or past its size " + std::to_string(source.size()));
    }
    prev_end = e.end();
  }
  return Status::Ok();
}

// Turns the ordered reads into frames: a read at or past a frame's start begins that frame
// (and every zero frame before it) in the writer.
class StreamSink {
 public:
  StreamSink(std::span<const Extent> frames, StreamWriter& writer)
      : frames_(frames), writer_(writer) {}

  Status Add(uint64_t offset, std::span<const uint8_t> bytes) {
    BFS_RETURN_IF_ERROR(BeginFramesUpTo(offset));
    return writer_.Append(bytes);
  }

  Status BeginFramesUpTo(uint64_t offset) {
    for (; next_ < frames_.size() && frames_[next_].offset <= offset; ++next_) {
      const Extent& e = frames_[next_];
      if (e.length == 0 || e.kind == ExtentKind::kHole) continue;
      BFS_RETURN_IF_ERROR(e.kind == ExtentKind::kData ? writer_.BeginData(e.offset, e.length)
                                                      : writer_.AddZero(e.offset, e.length));
    }
    return Status::Ok();
  }

 private:
  std::span<const Extent> frames_;
  StreamWriter& writer_;
  size_t next_ = 0;  // the first frame not yet begun
};

}  // namespace

Status ReadExtents(NbdSource& source, std::span<const Extent> frames, const CopyOptions& options,
                   const ChunkConsumer& consume) {
  if (options.window == 0 || options.request_size == 0) {
    return Status::InvalidArgument("copy window and request size must be positive");
  }
  BFS_RETURN_IF_ERROR(CheckFrames(source, frames));
  return Pipeline(source, frames, options, consume).Run();
}

Status CopyToStream(NbdSource& source, std::span<const Extent> frames, StreamWriter& writer,
                    const CopyOptions& options) {
  StreamSink sink(frames, writer);
  BFS_RETURN_IF_ERROR(ReadExtents(source, frames, options,
                                  [&sink](uint64_t offset, std::span<const uint8_t> bytes) {
                                    return sink.Add(offset, bytes);
                                  }));
  return sink.BeginFramesUpTo(UINT64_MAX);
}

}  // namespace backupfs
