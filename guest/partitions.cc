#include "guest/partitions.h"

#include <blkid/blkid.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>

#include "guest/blkid_window.h"

namespace backupfs {
namespace {

// Probing again finds what the regions copied last time point to (a logical partition's
// extended boot record, a table nested in a partition); real disks settle in two or three.
constexpr int kMaxRounds = 8;
// Overlaps named one by one; more are counted.
constexpr size_t kMaxOverlapsNamed = 16;
constexpr uint64_t kSector = 512;

// What one partition-table probe of the window found.
struct TableScan {
  bool rejected = false;
  std::string table, table_uuid;
  std::vector<Partition> partitions;  // in blkid's order, at most kMaxPartitions
  size_t total = 0;                   // how many blkid listed
  // Partitions of a table nested in another partition (a BSD label in an MBR slice): the
  // number of the partition that holds their table.
  std::map<int, int> parent_of;
};

std::string Str(const char* s) { return s ? std::string(s) : std::string(); }

Partition FromBlkid(blkid_partition par) {
  Partition p;
  p.number = blkid_partition_get_partno(par);
  const blkid_loff_t start = blkid_partition_get_start(par);
  const blkid_loff_t sectors = blkid_partition_get_size(par);
  constexpr blkid_loff_t kMaxSectors = INT64_MAX / kSector;
  if (start < 0 || sectors < 0 || start > kMaxSectors || sectors > kMaxSectors) {
    p.offset = UINT64_MAX;  // past any disk's end: dropped and named
  } else {
    p.offset = static_cast<uint64_t>(start) * kSector;
    p.size = static_cast<uint64_t>(sectors) * kSector;
  }
  p.container = blkid_partition_is_extended(par) != 0;
  p.entry_type = Str(blkid_partition_get_type_string(par));
  if (p.entry_type.empty()) {
    // blkid's own PART_ENTRY_TYPE spelling for MBR types ("0x83", "0x5").
    char hex[16];
    std::snprintf(hex, sizeof hex, "0x%x", static_cast<unsigned>(blkid_partition_get_type(par)));
    p.entry_type = hex;
  }
  p.entry_name = Str(blkid_partition_get_name(par));
  p.entry_uuid = Str(blkid_partition_get_uuid(par));
  return p;
}

Result<TableScan> ScanTable(const BlkidWindow& window) {
  BFS_ASSIGN_OR_RETURN(BlkidProbe probe, NewBlkidProbe(window, 0, window.disk().size()));
  blkid_probe_enable_superblocks(probe.get(), 0);
  blkid_probe_enable_partitions(probe.get(), 1);
  blkid_probe_set_partitions_flags(probe.get(), BLKID_PARTS_ENTRY_DETAILS);
  TableScan scan;
  // blkid_probe_get_partitions returns null both for "no table" and for an error; the probe's
  // own result tells them apart (-1: error, -2: ambivalent, 1: nothing).
  if (blkid_do_safeprobe(probe.get()) < 0) {
    scan.rejected = true;
    return scan;
  }
  blkid_partlist list = blkid_probe_get_partitions(probe.get());
  if (!list) return scan;
  if (blkid_parttable table = blkid_partlist_get_table(list)) {
    scan.table = Str(blkid_parttable_get_type(table));
    scan.table_uuid = Str(blkid_parttable_get_id(table));
  }
  const int n = std::max(blkid_partlist_numof_partitions(list), 0);
  scan.total = static_cast<size_t>(n);
  for (int i = 0; i < n && scan.partitions.size() < kMaxPartitions; ++i) {
    if (blkid_partition par = blkid_partlist_get_partition(list, i)) {
      scan.partitions.push_back(FromBlkid(par));
      blkid_parttable table = blkid_partition_get_table(par);
      if (blkid_partition parent = table ? blkid_parttable_get_parent(table) : nullptr) {
        scan.parent_of[scan.partitions.back().number] = blkid_partition_get_partno(parent);
      }
    }
  }
  return scan;
}

// Copies the regions of the partitions `scan` found; true when anything was new.
Result<bool> AddPartitionRegions(BlkidWindow& window, const TableScan& scan) {
  bool added = false;
  for (const Partition& p : scan.partitions) {
    if (p.size == 0) continue;
    BFS_ASSIGN_OR_RETURN(bool head, window.Add(p.offset, kMiB));
    const uint64_t tail_at = p.size > kMiB ? p.offset + p.size - kMiB : p.offset;
    BFS_ASSIGN_OR_RETURN(bool tail, window.Add(tail_at, kMiB));
    bool chain = false;
    if (p.container) {
      BFS_ASSIGN_OR_RETURN(chain, AddExtendedChain(window, p.offset, p.size));
    }
    added = added || head || tail || chain;
  }
  return added;
}

// Probes the window until no new region is copied (bounded rounds).
Result<TableScan> DiscoverTable(BlkidWindow& window, std::vector<std::string>& problems) {
  const uint64_t size = window.disk().size();
  BFS_RETURN_IF_ERROR(window.Add(0, kMiB).status());
  BFS_RETURN_IF_ERROR(window.Add(size > kMiB ? size - kMiB : 0, kMiB).status());
  BFS_RETURN_IF_ERROR(AddGptEntryArrays(window, problems).status());
  // blkid's MBR prober steps aside for an NTFS boot sector (0x55AA too) only when it finds
  // the $MFT the boot sector points to.
  BFS_RETURN_IF_ERROR(AddFilesystemHints(window, 0, size).status());
  for (int round = 1;; ++round) {
    BFS_ASSIGN_OR_RETURN(TableScan scan, ScanTable(window));
    if (scan.rejected || round == kMaxRounds) return scan;
    BFS_ASSIGN_OR_RETURN(bool added, AddPartitionRegions(window, scan));
    if (!added) return scan;
  }
}

std::string Lookup(blkid_probe probe, const char* name) {
  const char* value = nullptr;
  size_t length = 0;
  if (blkid_probe_lookup_value(probe, name, &value, &length) != 0 || !value) return "";
  return std::string(value, strnlen(value, length));
}

// TYPE, LABEL, UUID and VERSION of what `p` holds; a problem when blkid finds two signatures.
Status ProbeSuperblock(BlkidWindow& window, Partition& p, std::vector<std::string>& problems) {
  if (p.size == 0 || p.container) return Status::Ok();
  BFS_RETURN_IF_ERROR(AddFilesystemHints(window, p.offset, p.size).status());
  BFS_ASSIGN_OR_RETURN(BlkidProbe probe, NewBlkidProbe(window, p.offset, p.size));
  blkid_probe_enable_partitions(probe.get(), 0);
  blkid_probe_enable_superblocks(probe.get(), 1);
  blkid_probe_set_superblocks_flags(probe.get(), BLKID_SUBLKS_TYPE | BLKID_SUBLKS_LABEL |
                                                     BLKID_SUBLKS_UUID | BLKID_SUBLKS_VERSION);
  const int rc = blkid_do_safeprobe(probe.get());
  if (rc == -2) {
    problems.push_back(window.disk().name() + " partition " + std::to_string(p.number) +
                       ": blkid finds more than one filesystem signature; shown as unknown");
  }
  if (rc != 0) return Status::Ok();
  p.type = Lookup(probe.get(), "TYPE");
  p.label = Lookup(probe.get(), "LABEL");
  p.uuid = Lookup(probe.get(), "UUID");
  p.version = Lookup(probe.get(), "VERSION");
  return Status::Ok();
}

std::string Where(const Partition& p) {
  return "partition " + std::to_string(p.number) + " (bytes " + std::to_string(p.offset) + " to " +
         std::to_string(p.offset + p.size) + ")";
}

// Partitions past the disk's end are dropped and named.
std::vector<Partition> InsideDisk(const ByteSource& disk, std::vector<Partition> partitions,
                                  std::vector<std::string>& problems) {
  std::vector<Partition> inside;
  for (Partition& p : partitions) {
    if (p.offset >= disk.size() || p.size > disk.size() - p.offset) {
      problems.push_back(disk.name() + ": " + Where(p) + " ends past the disk's end (" +
                         std::to_string(disk.size()) + " bytes); not shown");
      continue;
    }
    inside.push_back(std::move(p));
  }
  return inside;
}

// A logical partition inside its extended container, or a partition of a table nested in
// another one, is how those tables work, not a problem.
bool Nested(const Partition& outer, const Partition& inner, const std::map<int, int>& parent_of) {
  auto parent = parent_of.find(inner.number);
  const bool holds =
      outer.container || (parent != parent_of.end() && parent->second == outer.number);
  return holds && inner.offset >= outer.offset &&
         inner.offset + inner.size <= outer.offset + outer.size;
}

void NameOverlaps(const ByteSource& disk, std::vector<Partition> sorted,
                  const std::map<int, int>& parent_of, std::vector<std::string>& problems) {
  std::sort(sorted.begin(), sorted.end(),
            [](const Partition& a, const Partition& b) { return a.offset < b.offset; });
  size_t found = 0;
  for (size_t i = 0; i < sorted.size(); ++i) {
    const Partition& a = sorted[i];
    for (size_t j = i + 1; j < sorted.size() && sorted[j].offset < a.offset + a.size; ++j) {
      const Partition& b = sorted[j];
      if (b.size == 0 || a.size == 0 || Nested(a, b, parent_of) || Nested(b, a, parent_of))
        continue;
      if (++found <= kMaxOverlapsNamed) {
        problems.push_back(disk.name() + ": " + Where(a) + " overlaps " + Where(b));
      }
    }
  }
  if (found > kMaxOverlapsNamed) {
    problems.push_back(disk.name() + ": " + std::to_string(found - kMaxOverlapsNamed) +
                       " more overlapping pairs of partitions");
  }
}

void Unpartitioned(const ByteSource& disk, DiskLayout& layout) {
  Partition whole;
  whole.number = 0;
  whole.size = disk.size();
  layout.partitions.push_back(whole);
}

}  // namespace

Result<DiskLayout> ProbeDisk(const ByteSource& disk) {
  DiskLayout layout;
  if (disk.size() == 0) {
    Unpartitioned(disk, layout);
    return layout;
  }
  BFS_ASSIGN_OR_RETURN(BlkidWindow window, BlkidWindow::Create(disk));
  BFS_ASSIGN_OR_RETURN(TableScan scan, DiscoverTable(window, layout.problems));
  if (scan.rejected) {
    layout.problems.push_back(disk.name() +
                              ": blkid rejects its partition table; shown as unpartitioned");
  }
  // A table that lists nothing (blkid calls an exFAT boot sector an empty "dos" table too):
  // the whole disk is shown, with what it holds.
  layout.table = scan.table;
  layout.table_uuid = scan.table_uuid;
  if (scan.table.empty() || scan.total == 0) {
    Unpartitioned(disk, layout);
  } else {
    if (scan.total > kMaxPartitions) {
      layout.problems.push_back(disk.name() + ": its " + scan.table + " table lists " +
                                std::to_string(scan.total) + " partitions; only the first " +
                                std::to_string(kMaxPartitions) + " are shown");
    }
    layout.partitions = InsideDisk(disk, std::move(scan.partitions), layout.problems);
    NameOverlaps(disk, layout.partitions, scan.parent_of, layout.problems);
  }
  for (Partition& p : layout.partitions) {
    BFS_RETURN_IF_ERROR(ProbeSuperblock(window, p, layout.problems));
  }
  if (window.exhausted()) {
    layout.problems.push_back(disk.name() +
                              ": too many regions to probe; some partitions may show no "
                              "filesystem type");
  }
  std::stable_sort(layout.partitions.begin(), layout.partitions.end(),
                   [](const Partition& a, const Partition& b) { return a.number < b.number; });
  return layout;
}

namespace {

// blkid's export quoting: " and \ escaped; control bytes as \xNN so a line stays one line.
std::string Quoted(const std::string& value) {
  std::string out = "\"";
  for (unsigned char c : value) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

void Field(std::string& line, const char* name, const std::string& value) {
  if (!value.empty()) line += std::string(" ") + name + "=" + Quoted(value);
}

}  // namespace

std::string DescribeLayout(const DiskLayout& layout) {
  std::string out;
  if (!layout.table.empty()) {
    out += "PTTYPE=" + Quoted(layout.table);
    Field(out, "PTUUID", layout.table_uuid);
    out += "\n";
  }
  for (const Partition& p : layout.partitions) {
    std::string line = p.number == 0 ? "disk:" : std::to_string(p.number) + ":";
    line += " START=" + std::to_string(p.offset) + " SIZE=" + std::to_string(p.size);
    Field(line, "TYPE", p.type);
    Field(line, "LABEL", p.label);
    Field(line, "UUID", p.uuid);
    Field(line, "VERSION", p.version);
    Field(line, "PART_ENTRY_TYPE", p.entry_type);
    Field(line, "PART_ENTRY_NAME", p.entry_name);
    Field(line, "PART_ENTRY_UUID", p.entry_uuid);
    out += line + "\n";
  }
  return out;
}

}  // namespace backupfs
