#include "capture/block_status.h"

#include <algorithm>
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

class Query {
 public:
  Query(NbdSource& source, uint64_t request) : source_(source), request_(request) {}

  Result<BlockStatusMaps> Run() {
    const NbdConnectOptions& opt = source_.options();
    if (!opt.allocation && opt.dirty_context.empty()) return std::move(maps_);
    uint64_t offset = 0;
    while (offset < source_.size()) {
      BFS_ASSIGN_OR_RETURN(uint64_t done, Step(offset));
      offset = done;
    }
    return std::move(maps_);
  }

 private:
  // One NBD_CMD_BLOCK_STATUS at `offset`; returns how far every context answered.
  Result<uint64_t> Step(uint64_t offset) {
    const NbdConnectOptions& opt = source_.options();
    Collector c{opt.dirty_context, offset, {}, {}, {}};
    const uint64_t count = std::min(request_, source_.size() - offset);
    nbd_extent_callback cb = {.callback = &Collector::Callback, .user_data = &c, .free = nullptr};
    if (nbd_block_status(source_.handle(), count, offset, cb, 0) == -1) {
      return source_.Error("block status at " + std::to_string(offset));
    }
    if (!c.problem.empty()) return Fail(offset, c.problem);
    // Contexts may answer for different lengths: keep what all of them cover.
    uint64_t stop = offset + count;
    if (opt.allocation) stop = std::min(stop, c.allocation.end(offset));
    if (!opt.dirty_context.empty()) stop = std::min(stop, c.dirty.end(offset));
    if (stop <= offset) return Fail(offset, "a meta context made no progress");
    Consume(c.allocation, offset, stop, [&](uint64_t o, uint64_t n, uint32_t f) {
      AppendExtent(maps_.allocation, {o, n, AllocationKind(f)});
    });
    Consume(c.dirty, offset, stop, [&](uint64_t o, uint64_t n, uint32_t f) {
      if (f & kNbdStateDirty) AppendRange(maps_.dirty, {o, n});
    });
    return stop;
  }

  Status Fail(uint64_t offset, const std::string& why) const {
    return Status::IOError("block status at " + std::to_string(offset) + " on " + source_.name() +
                           ": " + why);
  }

  NbdSource& source_;
  const uint64_t request_;
  BlockStatusMaps maps_;
};

}  // namespace

Result<BlockStatusMaps> QueryBlockStatus(NbdSource& source, uint64_t request) {
  if (request == 0) return Status::InvalidArgument("block status request size must be positive");
  return Query(source, request).Run();
}

}  // namespace backupfs
