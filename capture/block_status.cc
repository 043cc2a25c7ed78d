#include "capture/block_status.h"

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace backupfs {
namespace {

// One context's answer to one request: (offset, length, flags) from `start` on.
struct Reply {
  bool seen = false;
  std::vector<std::pair<uint64_t, uint32_t>> entries;  // length, flags
  uint64_t end(uint64_t start) const {
    for (const auto& e : entries) start += e.first;
    return start;
  }
};

// Collects one request's replies. Runs inside libnbd's callback: no libnbd calls here.
struct Collector {
  std::string dirty_context;
  uint64_t start = 0;  // the requested offset
  Reply allocation;
  Reply dirty;
  std::string problem;

  int OnExtents(const char* context, uint64_t offset, const uint32_t* entries, size_t n) {
    Reply* reply = context == std::string_view(kBaseAllocation) ? &allocation
                   : context == dirty_context                   ? &dirty
                                                                : nullptr;
    if (reply == nullptr) {
      problem = std::string("reply for unrequested meta context ") + context;
      return 0;
    }
    if (offset != start || reply->seen) {
      problem = std::string("unexpected reply for ") + context;
      return 0;
    }
    reply->seen = true;
    for (size_t i = 0; i + 1 < n; i += 2) reply->entries.emplace_back(entries[i], entries[i + 1]);
    return 0;
  }

  static int Callback(void* user, const char* context, uint64_t offset, uint32_t* entries, size_t n,
                      int* /*error*/) {
    return static_cast<Collector*>(user)->OnExtents(context, offset, entries, n);
  }
};

// Adds the part of `reply` inside [start, stop) to an extent list.
template <typename Add>
void Consume(const Reply& reply, uint64_t start, uint64_t stop, Add add) {
  uint64_t pos = start;
  for (const auto& [length, flags] : reply.entries) {
    if (pos >= stop) break;
    const uint64_t n = std::min<uint64_t>(length, stop - pos);
    add(pos, n, flags);
    pos += n;
  }
}

// The export is cut into ranges of `request` bytes, queried kBlockStatusWindow at a time
// (aio_block_status: over a network each query is a round trip, and a disk of many ranges
// would otherwise pay them one after the other). A range answered short is asked again from
// where the answer stopped. The answers are put together in offset order at the end.
class Query {
 public:
  Query(NbdSource& source, uint64_t request) : source_(source), request_(request) {}

  Result<BlockStatusMaps> Run() {
    const NbdConnectOptions& opt = source_.options();
    if (!opt.allocation && opt.dirty_context.empty()) return std::move(maps_);
    uint64_t next_range = 0;
    std::vector<std::unique_ptr<Pending>> flight;
    while (true) {
      while (flight.size() < kBlockStatusWindow && (!again_.empty() || next_range < size())) {
        Span span;
        if (!again_.empty()) {
          span = again_.back();
          again_.pop_back();
        } else {
          span = {next_range, std::min(size(), next_range + request_)};
          next_range = span.end;
        }
        BFS_ASSIGN_OR_RETURN(std::unique_ptr<Pending> p, Issue(span));
        flight.push_back(std::move(p));
      }
      if (flight.empty()) break;
      if (nbd_poll(source_.handle(), -1) == -1) return source_.Error("block status: nbd_poll");
      for (auto it = flight.begin(); it != flight.end();) {
        if (!(*it)->done) {
          ++it;
          continue;
        }
        BFS_RETURN_IF_ERROR(Harvest(**it));
        it = flight.erase(it);
      }
    }
    return Assemble();
  }

 private:
  struct Span {
    uint64_t start = 0, end = 0;
  };
  // One NBD_CMD_BLOCK_STATUS in flight. Its address is the callbacks' user data.
  struct Pending {
    Collector collector;
    uint64_t end = 0;  // of the range it belongs to
    bool done = false;
    int error = 0;
    static int OnComplete(void* user, int* error) {
      auto* p = static_cast<Pending*>(user);
      p->done = true;
      p->error = *error;
      return 1;
    }
  };
  // What every context answered from `start` on, up to `stop`.
  struct Answer {
    uint64_t stop = 0;
    Reply allocation, dirty;
  };

  uint64_t size() const { return source_.size(); }

  Result<std::unique_ptr<Pending>> Issue(const Span& span) {
    auto p = std::make_unique<Pending>();
    p->collector.dirty_context = source_.options().dirty_context;
    p->collector.start = span.start;
    p->end = span.end;
    nbd_extent_callback ecb = {
        .callback = &Collector::Callback, .user_data = &p->collector, .free = nullptr};
    nbd_completion_callback ccb = {
        .callback = &Pending::OnComplete, .user_data = p.get(), .free = nullptr};
    if (nbd_aio_block_status(source_.handle(), span.end - span.start, span.start, ecb, ccb, 0) ==
        -1) {
      return source_.Error("block status at " + std::to_string(span.start));
    }
    return p;
  }

  // Keeps what every context covered; asks again for the rest of the range.
  Status Harvest(Pending& p) {
    const NbdConnectOptions& opt = source_.options();
    Collector& c = p.collector;
    const uint64_t offset = c.start;
    if (p.error != 0) {
      return Status::FromErrno(
          "block status at " + std::to_string(offset) + " on " + source_.name(), p.error);
    }
    if (!c.problem.empty()) return Fail(offset, c.problem);
    // Contexts may answer for different lengths: keep what all of them cover.
    uint64_t stop = p.end;
    if (opt.allocation) stop = std::min(stop, c.allocation.end(offset));
    if (!opt.dirty_context.empty()) stop = std::min(stop, c.dirty.end(offset));
    if (stop <= offset) return Fail(offset, "a meta context made no progress");
    answers_[offset] = {stop, std::move(c.allocation), std::move(c.dirty)};
    if (stop < p.end) again_.push_back({stop, p.end});
    return Status::Ok();
  }

  Result<BlockStatusMaps> Assemble() {
    for (uint64_t offset = 0; offset < size();) {
      auto it = answers_.find(offset);
      if (it == answers_.end()) return Fail(offset, "no answer covers this offset");
      const Answer& a = it->second;
      Consume(a.allocation, offset, a.stop, [&](uint64_t o, uint64_t n, uint32_t f) {
        AppendExtent(maps_.allocation, {o, n, AllocationKind(f)});
      });
      Consume(a.dirty, offset, a.stop, [&](uint64_t o, uint64_t n, uint32_t f) {
        if (f & kNbdStateDirty) AppendRange(maps_.dirty, {o, n});
      });
      offset = a.stop;
    }
    return std::move(maps_);
  }

  Status Fail(uint64_t offset, const std::string& why) const {
    return Status::IOError("block status at " + std::to_string(offset) + " on " + source_.name() +
                           ": " + why);
  }

  NbdSource& source_;
  const uint64_t request_;
  std::map<uint64_t, Answer> answers_;  // by the offset asked
  std::vector<Span> again_;             // rests of ranges answered short
  BlockStatusMaps maps_;
};

}  // namespace

Result<BlockStatusMaps> QueryBlockStatus(NbdSource& source, uint64_t request) {
  if (request == 0) return Status::InvalidArgument("block status request size must be positive");
  return Query(source, request).Run();
}

}  // namespace backupfs
