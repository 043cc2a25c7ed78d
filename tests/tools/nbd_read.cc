// nbd-read: maps an NBD export (base:allocation) and reads its data extents through
// ReadExtents into nothing, timing both. The capture reader alone, for
// bench/run-nbd-latency-bench.sh and for trying a server by hand.
//
//   nbd-read (--socket PATH | --host H --port P [--tls DIR]) [--export NAME]
//            [--connections N] [--window N] [--buffer-mib N] [--request-kib N]
//
// Prints one line: "map 0.012 s, read 0.734 s, 1073741824 bytes in 1 extents, 3 connections".
// Exit 0 on success, 1 on a failed read (the message on stderr), 2 on bad arguments.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "capture/block_status.h"
#include "capture/extents.h"
#include "capture/nbd_copy.h"
#include "capture/nbd_source.h"

namespace backupfs {
namespace {

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

int Usage(const char* why) {
  std::fprintf(stderr,
               "nbd-read: %s\nusage: nbd-read (--socket PATH | --host H --port P [--tls DIR]) "
               "[--export NAME] [--connections N] [--window N] [--buffer-mib N] "
               "[--request-kib N]\n",
               why);
  return 2;
}

int Run(int argc, char** argv) {
  NbdConnectOptions connect;
  CopyOptions copy;
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (i + 1 >= argc) return Usage("every option takes a value");
    const std::string value = argv[++i];
    const unsigned long n = std::strtoul(value.c_str(), nullptr, 10);
    if (flag == "--socket") {
      connect.endpoint.socket = value;
    } else if (flag == "--host") {
      connect.endpoint.host = value;
    } else if (flag == "--port") {
      connect.endpoint.port = static_cast<unsigned>(n);
    } else if (flag == "--tls") {
      connect.endpoint.tls = true;
      connect.endpoint.tls_dir = value;
    } else if (flag == "--export") {
      connect.export_name = value;
    } else if (flag == "--connections") {
      copy.connections = static_cast<unsigned>(n);
    } else if (flag == "--window") {
      copy.window = static_cast<unsigned>(n);
    } else if (flag == "--buffer-mib") {
      copy.buffer_bytes = static_cast<uint64_t>(n) << 20;
    } else if (flag == "--request-kib") {
      copy.request_size = static_cast<uint64_t>(n) << 10;
    } else {
      return Usage(("unknown option " + std::string(flag)).c_str());
    }
  }
  const auto start = std::chrono::steady_clock::now();
  Result<NbdSource> source = NbdSource::Connect(connect);
  if (!source.ok()) {
    std::fprintf(stderr, "nbd-read: %s\n", source.status().ToString().c_str());
    return 1;
  }
  Result<BlockStatusMaps> maps = QueryBlockStatus(*source);
  if (!maps.ok()) {
    std::fprintf(stderr, "nbd-read: %s\n", maps.status().ToString().c_str());
    return 1;
  }
  const double map_seconds = Seconds(start);
  const ExtentList frames = FullFrames(maps->allocation);
  size_t data_extents = 0;
  for (const Extent& e : frames) data_extents += e.kind == ExtentKind::kData;
  const auto read_start = std::chrono::steady_clock::now();
  uint64_t bytes = 0;
  Status s = ReadExtents(*source, frames, copy, [&bytes](uint64_t, std::span<const uint8_t> b) {
    bytes += b.size();
    return Status::Ok();
  });
  if (!s.ok()) {
    std::fprintf(stderr, "nbd-read: %s\n", s.ToString().c_str());
    return 1;
  }
  std::printf("map %.3f s, read %.3f s, %llu bytes in %zu extents, multi-conn %s\n", map_seconds,
              Seconds(read_start), static_cast<unsigned long long>(bytes), data_extents,
              source->can_multi_conn() ? "yes" : "no");
  return 0;
}

}  // namespace
}  // namespace backupfs

int main(int argc, char** argv) { return backupfs::Run(argc, argv); }
