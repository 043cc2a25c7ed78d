// Stream write and indexed read throughput, side by side with memcpy and cat of the same bytes.
// Run through bench/run-stream-bench.sh, which prints medians and the ratios.
//
// Every benchmark moves the same kBytes of incompressible data, with page-cached files in
// $BENCH_DIR (default /var/tmp), no fsync (cat does not fsync either).
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "stream/reader.h"
#include "stream/writer.h"

namespace bfs = backupfs;
extern char** environ;

namespace {

constexpr uint64_t kBytes = 512u << 20;
constexpr size_t kIo = 1u << 20;  // the FUSE read size and the writer's append size

std::string Dir() {
  const char* d = std::getenv("BENCH_DIR");
  return d ? d : "/var/tmp";
}

const std::vector<uint8_t>& Source() {
  static const std::vector<uint8_t> bytes = [] {
    std::vector<uint8_t> b(kBytes);
    std::mt19937_64 rng(42);
    for (size_t i = 0; i < b.size(); i += 8) {
      uint64_t v = rng();
      std::memcpy(b.data() + i, &v, 8);
    }
    return b;
  }();
  return bytes;
}

std::string RawFile() {
  static const std::string path = [] {
    std::string p = Dir() + "/bfs-bench.raw";
    int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ::write(fd, Source().data(), kBytes) != static_cast<ssize_t>(kBytes))
      std::abort();
    ::close(fd);
    return p;
  }();
  return path;
}

void WriteStream(const std::string& path, std::optional<int> lz4) {
  bfs::StreamMetadata meta;
  meta.virtual_size = kBytes;
  meta.data_size = kBytes;
  meta.disk_name = "vda";
  bfs::WriterOptions opts;
  opts.durable = false;
  opts.lz4_level = lz4;
  auto w = bfs::StreamWriter::Create(path, meta, opts);
  if (!w.ok() || !(*w)->BeginData(0, kBytes).ok()) std::abort();
  for (uint64_t pos = 0; pos < kBytes; pos += kIo) {
    if (!(*w)->Append(std::span(Source()).subspan(pos, kIo)).ok()) std::abort();
  }
  if (!(*w)->Finish().ok()) std::abort();
}

std::string StreamFile(bool lz4) {
  std::string path = Dir() + (lz4 ? "/bfs-bench.lz4.data" : "/bfs-bench.raw.data");
  if (::access(path.c_str(), R_OK) != 0)
    WriteStream(path, lz4 ? std::optional<int>(0) : std::nullopt);
  return path;
}

// Runs `cat IN` with standard output on OUT, as an argument vector.
void RunCat(const std::string& in, const std::string& out) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::string cat = "cat";
  char* argv[] = {cat.data(), const_cast<char*>(in.c_str()), nullptr};
  pid_t pid;
  if (posix_spawnp(&pid, "cat", &fa, nullptr, argv, environ) != 0) std::abort();
  int status;
  ::waitpid(pid, &status, 0);
  posix_spawn_file_actions_destroy(&fa);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) std::abort();
}

void SetBytes(benchmark::State& state) {
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kBytes));
}

void BM_Memcpy(benchmark::State& state) {
  std::vector<uint8_t> dst(kBytes);
  for (auto _ : state) {
    std::memcpy(dst.data(), Source().data(), kBytes);
    benchmark::DoNotOptimize(dst.data());
  }
  SetBytes(state);
}

void BM_CatRead(benchmark::State& state) {
  std::string in = RawFile();
  for (auto _ : state) RunCat(in, "/dev/null");
  SetBytes(state);
}

void BM_CatWrite(benchmark::State& state) {
  std::string in = RawFile();
  std::string out = Dir() + "/bfs-bench.cat-out";
  for (auto _ : state) RunCat(in, out);
  ::unlink(out.c_str());
  SetBytes(state);
}

void BM_StreamWrite(benchmark::State& state) {
  const bool lz4 = state.range(0) != 0;
  Source();
  std::string path = Dir() + "/bfs-bench.write.data";
  for (auto _ : state) WriteStream(path, lz4 ? std::optional<int>(0) : std::nullopt);
  for (const char* suffix : {"", ".idx", ".chksum"}) ::unlink((path + suffix).c_str());
  SetBytes(state);
}

// Reads the whole disk in 1 MiB requests in a shuffled order, through the index.
void BM_StreamRandomRead(benchmark::State& state) {
  const bool lz4 = state.range(0) != 0;
  bfs::ReaderOptions ro;
  ro.verify_checksums = state.range(1) != 0;
  auto reader = bfs::StreamReader::Open(StreamFile(lz4), ro);
  if (!reader.ok()) std::abort();
  std::vector<uint64_t> order;
  for (uint64_t pos = 0; pos < kBytes; pos += kIo) order.push_back(pos);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(7));
  std::vector<uint8_t> buf(kIo);
  for (auto _ : state) {
    for (uint64_t pos : order) {
      if (!(*reader)->Read(pos, buf).ok()) std::abort();
    }
  }
  SetBytes(state);
}

// Sequential 1 MiB reads (the access pattern of a restore or qemu-img convert).
void BM_StreamSequentialRead(benchmark::State& state) {
  const bool lz4 = state.range(0) != 0;
  bfs::ReaderOptions ro;
  ro.verify_checksums = state.range(1) != 0;
  auto reader = bfs::StreamReader::Open(StreamFile(lz4), ro);
  if (!reader.ok()) std::abort();
  std::vector<uint8_t> buf(kIo);
  for (auto _ : state) {
    for (uint64_t pos = 0; pos < kBytes; pos += kIo) {
      if (!(*reader)->Read(pos, buf).ok()) std::abort();
    }
  }
  SetBytes(state);
}

}  // namespace

BENCHMARK(BM_Memcpy)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_CatRead)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_CatWrite)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_StreamWrite)
    ->ArgName("lz4")
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_StreamRandomRead)
    ->ArgNames({"lz4", "verify"})
    ->Args({0, 0})
    ->Args({0, 1})
    ->Args({1, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_StreamSequentialRead)
    ->ArgNames({"lz4", "verify"})
    ->Args({0, 0})
    ->Args({0, 1})
    ->Args({1, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_MAIN();
