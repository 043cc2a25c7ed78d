// A new qcow2 image written directly, without QEMU: the restore's fast path.
//
// Through qemu-nbd every byte is copied four times between processes and the page cache;
// written here it is copied once, as `qemu-img convert` does. Data clusters are appended to the
// file in the order they are written (any thread, any order), and Finish() lays out the
// metadata after them: L2 tables, the L1 table, refcount blocks and the refcount table, then
// the header. The image is `<path>.partial` until Finish() has fsynced and renamed it.
//
// The subset of the format written (docs/interop/qcow2.txt of QEMU): version 3 (compat 1.1),
// a cluster size from 512 B to 2 MiB, 16-bit refcounts, zlib compression type (no cluster
// is compressed), standard L2 entries, no backing file, no snapshots, no external data file,
// no encryption. Images that need more (compat 0.10, other refcount widths, extended L2,
// zstd, preallocation, compressed clusters) are written through qemu-nbd instead: see
// Qcow2WriterFits().
//
// Writes must cover whole clusters (the last one may end at the virtual size), and each
// cluster must be written at most once; grain() tells the copier the cluster size.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/image_writer.h"
#include "common/thread_annotations.h"
#include "stream/file.h"

namespace backupfs {

struct Qcow2Layout {
  uint32_t cluster_bits = 16;
  bool lazy_refcounts = false;
};

// Whether `create_options` (qemu-img create -o values, as ParseQcowCreateOptions gives them)
// are within what Qcow2Writer writes; fills `layout` when they are.
bool Qcow2WriterFits(const std::vector<std::string>& create_options, Qcow2Layout* layout);

class Qcow2Writer final : public ImageWriter {
 public:
  static Result<std::unique_ptr<Qcow2Writer>> Create(const std::string& path, uint64_t size,
                                                     const Qcow2Layout& layout);
  ~Qcow2Writer() override;
  Qcow2Writer(const Qcow2Writer&) = delete;
  Qcow2Writer& operator=(const Qcow2Writer&) = delete;

  unsigned lanes() const override { return 4; }
  uint64_t grain() const override { return cluster_; }
  Status Write(unsigned lane, uint64_t offset, std::span<const uint8_t> bytes) override;
  Status Zero(unsigned lane, uint64_t offset, uint64_t length) override;
  bool zeroed_at_start() const override { return true; }
  Status Finish() override;
  const std::string& path() const override { return path_; }

 private:
  Qcow2Writer(std::string path, UniqueFd fd, uint64_t size, const Qcow2Layout& layout);
  std::string partial() const { return path_ + ".partial"; }
  Status MapClusters(uint64_t first_virtual, uint64_t count, uint64_t first_host) EXCLUDES(mu_);
  Status WriteMetadata() EXCLUDES(mu_);

  const std::string path_;
  UniqueFd fd_;
  const uint64_t size_;
  const Qcow2Layout layout_;
  const uint64_t cluster_;
  const uint64_t l2_entries_;  // entries of one L2 table: cluster_ / 8
  const uint64_t l1_size_;     // L2 tables needed to map size_
  bool finished_ = false;
  std::atomic<uint64_t> next_cluster_{1};  // cluster 0 holds the header
  Mutex mu_;
  // The L2 tables that have an entry, by L1 index (host byte order; null: none yet).
  std::vector<std::unique_ptr<uint64_t[]>> l2_ GUARDED_BY(mu_);
};

}  // namespace backupfs
