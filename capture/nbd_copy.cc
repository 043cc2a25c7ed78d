#include "capture/nbd_copy.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/thread_annotations.h"
#include "stream/file.h"

namespace backupfs {
namespace {

enum class SlotState { kFree, kInFlight, kDone };

// The copy's settings once the automatic ones are resolved for the source's transport.
struct Plan {
  uint64_t request;
  unsigned window;
  unsigned connections;
  uint64_t buffer_bytes;
};

Plan MakePlan(const NbdSource& source, const CopyOptions& o) {
  const bool tcp = source.options().endpoint.tcp();
  Plan p;
  p.request = std::min(o.request_size, source.max_block());
  p.window = o.window != 0 ? o.window : tcp ? kTcpWindow : kUnixWindow;
  p.connections = o.connections != 0 ? o.connections : tcp ? kTcpConnections : 1;
  if (!source.can_multi_conn()) p.connections = 1;
  p.connections = std::min(p.connections, p.window);
  p.buffer_bytes = o.buffer_bytes != 0 ? o.buffer_bytes
                   : tcp               ? kTcpBufferBytes
                                       : p.window * p.request;
  p.buffer_bytes = std::max(p.buffer_bytes, p.request);
  return p;
}

// Reads are issued in order into a ring of slots (read k uses slot k % window) and delivered
// in the same order, so completions may arrive in any order, on any connection. Their bytes
// live in one circular buffer of buffer_bytes, taken and given back in that same order, which
// bounds memory whatever the sizes of the reads.
//
// Threads: one I/O thread owns every connection (issues reads, each on the connection with
// the fewest in flight, polls all their sockets at once and runs the completion callbacks);
// the caller's thread runs the consumer and wakes the I/O thread through an eventfd when it
// frees room the I/O thread waits for. One I/O thread, not one per connection: on a busy
// 2-core machine four polling threads made a scattered read over TCP 2-5x slower. They share
// the slot states, the cursor over the extents, the buffer's ends and the flags below, all
// protected by mu_; nobody holds mu_ while calling into libnbd or the consumer. A slot's
// offset, length and data are written under mu_ while it is free and read by whoever sees it
// in flight or done.
class Pipeline {
  // One read. Its address is the completion callback's user data: slots never move.
  struct Slot {
    Pipeline* owner = nullptr;
    uint64_t offset = 0;
    size_t length = 0;
    uint8_t* data = nullptr;  // inside buffer_
    uint64_t buffer_end = 0;  // the buffer's tail moves here once delivered
    SlotState state = SlotState::kFree;
    int error = 0;
  };

 public:
  // `connecting`: extra connections whose handshakes the I/O thread completes while it
  // reads on `source`; each joins the reads once ready.
  Pipeline(NbdSource& source, std::vector<NbdSource*> connecting, std::span<const Extent> frames,
           const Plan& plan, const CopyOptions& options, const ChunkConsumer& consume)
      : source_(source),
        ready_{&source},
        connecting_(std::move(connecting)),
        frames_(frames),
        plan_(plan),
        consume_(consume),
        options_(options),
        slots_(plan.window) {
    for (Slot& slot : slots_) slot.owner = this;
  }

  Status Run() {
    // Untouched pages cost nothing: a small copy only ever touches what it reads.
    buffer_.reset(new uint8_t[plan_.buffer_bytes]);
    if (!wake_.valid()) return Status::FromErrno("eventfd for an NBD copy", errno);
    std::thread io([this] { IoThread(); });
    Status s = Consume();
    {
      MutexLock lock(mu_);
      stop_ = true;
    }
    Wake();
    io.join();
    return s;
  }

 private:
  NbdSource& source() const { return source_; }

  // The caller's thread: hands completed reads to the consumer in issue order.
  Status Consume() {
    uint64_t delivered_end = 0;  // for messages
    for (uint64_t delivered = 0;; ++delivered) {
      Slot& head = slots_[delivered % slots_.size()];
      {
        MutexLock lock(mu_);
        while (head.state != SlotState::kDone && !io_finished_) consumer_cv_.Wait(mu_);
        if (head.state != SlotState::kDone) {
          // Everything delivered (Ok), or the I/O thread failed: say where the copy was.
          if (io_status_.ok()) return io_status_;
          if (head.state == SlotState::kInFlight) {
            return io_status_.WithSuffix(" (during the " + What(head) + ")");
          }
          return io_status_.WithSuffix(" (every byte up to offset " +
                                       std::to_string(delivered_end) + " was read)");
        }
        if (head.error != 0) {
          return Status::FromErrno(What(head) + " on " + source().name(), head.error);
        }
      }
      if (options_.cancelled && options_.cancelled()) {
        return Status::Cancelled("stopped on request at offset " + std::to_string(head.offset) +
                                 " of " + source().name());
      }
      BFS_RETURN_IF_ERROR(consume_(head.offset, {head.data, head.length}));
      if (options_.delivered) options_.delivered(head.length);
      delivered_end = head.offset + head.length;
      bool wake = false;
      {
        MutexLock lock(mu_);
        head.state = SlotState::kFree;
        buffer_tail_ = head.buffer_end;
        wake = std::exchange(io_waits_for_room_, false);
      }
      if (wake) Wake();
    }
  }

  // Makes the I/O thread's poll return (it waits for room, or the copy stops).
  void Wake() {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof one);
  }

  void IoThread() {
    Status s = IssueAndPoll();
    // Reads still in flight point into slots_ and buffer_: wait for them (a dead connection
    // has already retired its commands).
    for (NbdSource* c : ready_) {
      nbd_handle* h = c->handle();
      while (nbd_aio_in_flight(h) > 0 && nbd_poll(h, -1) != -1) {
      }
    }
    {
      MutexLock lock(mu_);
      io_status_ = s;
      io_finished_ = true;
    }
    consumer_cv_.NotifyAll();
  }

  // Keeps every connection's share of the window full and polls them all (and the wake
  // eventfd) until every piece is read or the copy stops.
  Status IssueAndPoll() {
    while (true) {
      BFS_RETURN_IF_ERROR(Fill());
      bool in_flight = false;
      for (NbdSource* c : ready_) in_flight |= nbd_aio_in_flight(c->handle()) > 0;
      {
        MutexLock lock(mu_);
        if (stop_ || (exhausted_ && !has_piece_ && !in_flight)) return Status::Ok();
        // Told by the consumer when a slot and its bytes come free.
        io_waits_for_room_ = !CanClaim();
      }
      BFS_RETURN_IF_ERROR(PollOnce());
    }
  }

  // Issues reads, each on the connection with the fewest in flight, until the window or the
  // buffer is full, every connection has its share in flight, or every piece is asked for.
  Status Fill() {
    while (true) {
      NbdSource* best = nullptr;
      // The window shared among the connections ready so far.
      int fewest = static_cast<int>((plan_.window + ready_.size() - 1) / ready_.size());
      for (NbdSource* c : ready_) {
        const int n = nbd_aio_in_flight(c->handle());
        if (n < fewest) fewest = n, best = c;
      }
      if (best == nullptr) return Status::Ok();
      Slot* slot = Claim();
      if (slot == nullptr) return Status::Ok();
      BFS_RETURN_IF_ERROR(Issue(*best, *slot));
    }
  }

  // One poll over every connection's socket (the connecting ones too), in the directions
  // libnbd wants, and the wake eventfd; then lets libnbd read or write what is ready
  // (completions and handshakes move on here).
  Status PollOnce() {
    std::vector<pollfd>& fds = pollfds_;
    fds.clear();
    for (NbdSource* c : ready_) BFS_RETURN_IF_ERROR(AddPollFd(*c));
    for (NbdSource* c : connecting_) BFS_RETURN_IF_ERROR(AddPollFd(*c));
    fds.push_back({wake_.get(), POLLIN, 0});
    if (::poll(fds.data(), fds.size(), -1) == -1) {
      if (errno == EINTR) return Status::Ok();
      return Status::FromErrno("poll on the connections to " + source().name(), errno);
    }
    for (size_t i = 0; i < ready_.size(); ++i) {
      BFS_RETURN_IF_ERROR(Notify(*ready_[i], fds[i].revents));
    }
    BFS_RETURN_IF_ERROR(AdvanceHandshakes(std::span(fds).subspan(ready_.size())));
    if (fds.back().revents & POLLIN) {
      uint64_t count;
      [[maybe_unused]] ssize_t n = ::read(wake_.get(), &count, sizeof count);
    }
    return Status::Ok();
  }

  Status AddPollFd(NbdSource& c) {
    const int fd = nbd_aio_get_fd(c.handle());
    if (fd == -1) return c.Error("nbd_aio_get_fd");
    const unsigned dir = nbd_aio_get_direction(c.handle());
    pollfds_.push_back({fd,
                        static_cast<short>(((dir & LIBNBD_AIO_DIRECTION_READ) ? POLLIN : 0) |
                                           ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? POLLOUT : 0)),
                        0});
    return Status::Ok();
  }

  Status Notify(NbdSource& c, short revents) {
    if ((revents & (POLLIN | POLLHUP | POLLERR)) && nbd_aio_notify_read(c.handle()) == -1) {
      return c.Error("waiting for NBD replies");
    }
    if ((revents & POLLOUT) && nbd_aio_notify_write(c.handle()) == -1) {
      return c.Error("sending NBD requests");
    }
    return Status::Ok();
  }

  // Moves the handshakes of the connecting connections on; a finished one joins ready_.
  // `polled` holds their pollfds, in connecting_'s order.
  Status AdvanceHandshakes(std::span<const pollfd> polled) {
    std::vector<NbdSource*> still;
    for (size_t i = 0; i < connecting_.size(); ++i) {
      NbdSource& c = *connecting_[i];
      Status s = Notify(c, polled[i].revents);
      if (s.ok() && nbd_aio_is_ready(c.handle()) == 1) s = c.FinishConnect();
      if (s.ok() && (nbd_aio_is_dead(c.handle()) == 1 || nbd_aio_is_closed(c.handle()) == 1)) {
        s = NbdConnectError(c.options().endpoint, nbd_get_error() ? nbd_get_error() : "closed");
      }
      if (!s.ok()) return s.WithPrefix("extra connection (multi-conn) to " + c.name());
      if (nbd_aio_is_ready(c.handle()) == 1) {
        ready_.push_back(&c);
      } else {
        still.push_back(&c);
      }
    }
    connecting_ = std::move(still);
    return Status::Ok();
  }

  // Takes the next slot and buffer bytes for the next piece; null when the window or the
  // buffer is full, the copy stopped, or every piece has been taken.
  Slot* Claim() EXCLUDES(mu_) {
    MutexLock lock(mu_);
    if (!CanClaim()) return nullptr;
    Slot& slot = slots_[issued_ % slots_.size()];
    const uint64_t start = BufferStart(piece_length_);
    slot.offset = piece_offset_;
    slot.length = piece_length_;
    slot.data = buffer_.get() + start % plan_.buffer_bytes;
    slot.buffer_end = start + piece_length_;
    slot.state = SlotState::kInFlight;
    slot.error = 0;
    buffer_head_ = slot.buffer_end;
    has_piece_ = false;
    ++issued_;
    return &slot;
  }

  bool CanClaim() REQUIRES(mu_) {
    if (stop_ || (!has_piece_ && !NextPiece())) return false;
    if (slots_[issued_ % slots_.size()].state != SlotState::kFree) return false;
    return BufferStart(piece_length_) + piece_length_ - buffer_tail_ <= plan_.buffer_bytes;
  }

  // Where `length` contiguous bytes would start (a position that only grows; the buffer
  // index is it modulo buffer_bytes): at the head, or at the next lap when they would wrap.
  uint64_t BufferStart(uint64_t length) const REQUIRES(mu_) {
    const uint64_t in_lap = buffer_head_ % plan_.buffer_bytes;
    return in_lap + length <= plan_.buffer_bytes ? buffer_head_
                                                 : buffer_head_ + plan_.buffer_bytes - in_lap;
  }

  Status Issue(NbdSource& connection, Slot& slot) {
    nbd_completion_callback cb = {
        .callback = &Pipeline::OnComplete, .user_data = &slot, .free = nullptr};
    if (nbd_aio_pread(connection.handle(), slot.data, slot.length, slot.offset, cb, 0) == -1) {
      return connection.Error(What(slot));
    }
    return Status::Ok();
  }

  // Runs inside nbd_poll on the connection's I/O thread: records the outcome and wakes the
  // consumer. Returning 1 retires the command.
  static int OnComplete(void* user, int* error) {
    Slot* slot = static_cast<Slot*>(user);
    Pipeline* self = slot->owner;
    {
      MutexLock lock(self->mu_);
      slot->error = *error;
      slot->state = SlotState::kDone;
    }
    self->consumer_cv_.NotifyAll();
    return 1;
  }

  // Moves the cursor to the next piece of a data extent; false at the end.
  bool NextPiece() REQUIRES(mu_) {
    for (; extent_ < frames_.size(); ++extent_, pos_ = 0) {
      const Extent& e = frames_[extent_];
      if (e.kind == ExtentKind::kData && pos_ < e.length) {
        piece_offset_ = e.offset + pos_;
        piece_length_ = static_cast<size_t>(std::min(plan_.request, e.length - pos_));
        pos_ += piece_length_;
        has_piece_ = true;
        return true;
      }
    }
    exhausted_ = true;
    return false;
  }

  static std::string What(const Slot& slot) {
    return "read of " + std::to_string(slot.length) + " bytes at " + std::to_string(slot.offset);
  }

  NbdSource& source_;                   // the caller's
  std::vector<NbdSource*> ready_;       // I/O thread only: connections to read on
  std::vector<NbdSource*> connecting_;  // I/O thread only: handshakes under way
  const std::span<const Extent> frames_;
  const Plan plan_;
  const ChunkConsumer& consume_;
  const CopyOptions& options_;
  std::unique_ptr<uint8_t[]> buffer_;  // plan_.buffer_bytes

  Mutex mu_;
  CondVar consumer_cv_;  // a slot is done, or the I/O thread ended
  // The consumer wakes the I/O thread's poll through it (room in the window, or stop).
  UniqueFd wake_{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
  std::vector<pollfd> pollfds_;  // I/O thread only
  std::vector<Slot> slots_;      // fixed size; a slot's fields are protected by mu_ (see above)
  bool stop_ GUARDED_BY(mu_) = false;               // the consumer is done
  bool io_finished_ GUARDED_BY(mu_) = false;        // the I/O thread has returned io_status_
  bool io_waits_for_room_ GUARDED_BY(mu_) = false;  // wake it when a slot comes free
  Status io_status_ GUARDED_BY(mu_);
  uint64_t issued_ GUARDED_BY(mu_) = 0;       // reads issued so far
  uint64_t buffer_head_ GUARDED_BY(mu_) = 0;  // buffer positions (growing; see BufferStart)
  uint64_t buffer_tail_ GUARDED_BY(mu_) = 0;  // the end of the last delivered read
  size_t extent_ GUARDED_BY(mu_) = 0;         // cursor: the extent being split into reads
  uint64_t pos_ GUARDED_BY(mu_) = 0;          // cursor: bytes of it already asked for
  bool has_piece_ GUARDED_BY(mu_) = false;    // piece_*: the next read, not issued yet
  bool exhausted_ GUARDED_BY(mu_) = false;    // every piece has been issued
  uint64_t piece_offset_ GUARDED_BY(mu_) = 0;
  size_t piece_length_ GUARDED_BY(mu_) = 0;
};

// Starts the copy's extra connections, opened like `source` (into its park, if any) but
// without meta contexts: they only read. Their handshakes go on while the copy reads on
// `source` (a handshake is several round trips: ~50 ms at 5 ms of latency). One that has not
// finished by the end of the copy is dropped, so a server that never answers a second
// connection (qemu-nbd --shared=1) costs nothing.
Result<std::vector<NbdSource>> StartExtraConnections(const NbdSource& source, unsigned count) {
  NbdConnectOptions o = source.options();
  o.allocation = false;
  o.dirty_context.clear();
  std::vector<NbdSource> extra;
  for (unsigned i = 0; i < count; ++i) {
    Result<NbdSource> c = NbdSource::StartConnect(o);
    if (!c.ok()) return c.status().WithPrefix("an extra connection for a multi-conn read");
    extra.push_back(std::move(c).value());
  }
  return extra;
}

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

// A connection handed to the park mid-handshake keeps QEMU's NBD server from stopping when
// the backup job ends: seen here with a small inc, whose copy was done before the extra
// connections had shaken hands; the job's abort then never completed and libvirt's state
// lock timed out. The handshakes the copy did not wait for are finished before the
// connections go (bounded: a server that never answers does not hold the run).
void FinishHandshakes(std::vector<NbdSource>& extra) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (NbdSource& c : extra) {
    while (nbd_aio_is_connecting(c.handle()) == 1 && std::chrono::steady_clock::now() < deadline) {
      if (nbd_poll(c.handle(), 100) == -1) break;
    }
  }
}

}  // namespace

Status ReadExtents(NbdSource& source, std::span<const Extent> frames, const CopyOptions& options,
                   const ChunkConsumer& consume) {
  if (options.request_size == 0) {
    return Status::InvalidArgument("copy request size must be positive");
  }
  BFS_RETURN_IF_ERROR(CheckFrames(source, frames));
  const Plan plan = MakePlan(source, options);
  // Nothing to read: no connections to open.
  if (DataBytes(frames) == 0) return Status::Ok();
  BFS_ASSIGN_OR_RETURN(std::vector<NbdSource> extra,
                       StartExtraConnections(source, plan.connections - 1));
  std::vector<NbdSource*> connecting;
  for (NbdSource& c : extra) connecting.push_back(&c);
  Status copied = Pipeline(source, std::move(connecting), frames, plan, options, consume).Run();
  FinishHandshakes(extra);
  return copied;
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
