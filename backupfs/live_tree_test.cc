// The live mount's model without FUSE: reloads that reuse readers, a writer's lock that holds a
// reload back, eviction beyond the bound on open data files, inode numbers that stay for
// unchanged points and change for changed ones, lookup counts, and directories of savesets.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "backupfs/live_saveset.h"
#include "backupfs/saveset_pool.h"
#include "backupfs/tree.h"
#include "stream/local_storage.h"
#include "stream/test_util.h"
#include "stream/writer.h"

namespace backupfs {
namespace {

std::shared_ptr<Storage> Local(const std::string& dir) { return OpenLocalStorage(dir); }

using testing::RandomBytes;
using testing::ScratchDir;

std::string Cp(int n) { return "virtnbdbackup." + std::to_string(n); }

// Writes data files of disk vda into `dir`: 4 KiB at a place that depends on `seed`.
void WriteFile(const std::string& dir, const std::string& file, int cp, int parent, uint64_t seed) {
  const std::vector<uint8_t> bytes = RandomBytes(4096, seed);
  StreamMetadata m;
  m.disk_name = "vda";
  m.checkpoint_name = Cp(cp);
  m.parent_checkpoint = parent < 0 ? "" : Cp(parent);
  m.incremental = parent >= 0;
  m.date = "2026-01-01T1" + std::to_string(cp % 10) + ":00:00";
  m.virtual_size = 1u << 20;
  m.data_size = bytes.size();
  m.disk_format = "qcow2";
  WriterOptions options;
  options.durable = false;
  auto w = StreamWriter::Create(dir + "/" + file, m, options);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  ASSERT_TRUE((*w)->AddData((seed % 16) * 4096, bytes).ok());
  ASSERT_TRUE((*w)->Finish().ok());
}
void Full(const std::string& dir, uint64_t seed = 1) {
  WriteFile(dir, "vda.full.data", 0, -1, seed);
}
void Inc(const std::string& dir, int cp, uint64_t seed = 2) {
  WriteFile(dir, "vda.inc." + Cp(cp) + ".data", cp, cp - 1, seed + cp);
}

LiveSaveset::Options NoPool() { return {OpenOptions{}, nullptr, nullptr}; }

const DiskChain& ChainOf(const SavesetState& s, const std::string& point) {
  return s.Find(point)->disks.at(0);
}

TEST(LiveSavesetTest, ReloadReusesReadersAndImagesOfUnchangedChains) {
  ScratchDir dir;
  Full(dir.path());
  Inc(dir.path(), 1);
  auto live = std::make_shared<LiveSaveset>(Local(dir.path()), NoPool());
  LiveSaveset::Snapshot first = live->Poll();
  ASSERT_TRUE(first.state);
  ASSERT_EQ(first.state->model.points.size(), 2u);
  Inc(dir.path(), 2);
  LiveSaveset::Snapshot second = live->Poll();  // the directory changed
  ASSERT_TRUE(second.state);
  EXPECT_NE(second.version, first.version);
  ASSERT_EQ(second.state->model.latest, Cp(2));
  EXPECT_EQ(ChainOf(*second.state, Cp(1)).files.at(1).get(),
            ChainOf(*first.state, Cp(1)).files.at(1).get());
  EXPECT_EQ(second.state->images.at(Cp(1)).at("vda").get(),
            first.state->images.at(Cp(1)).at("vda").get());
  EXPECT_EQ(second.state->chains.at(Cp(1)), first.state->chains.at(Cp(1)));
}

TEST(LiveSavesetTest, ChangedFileIsOpenedAgainAndItsImageIsNew) {
  ScratchDir dir;
  Full(dir.path());
  Inc(dir.path(), 1);
  auto live = std::make_shared<LiveSaveset>(Local(dir.path()), NoPool());
  LiveSaveset::Snapshot first = live->Poll();
  std::filesystem::remove(dir.File("vda.inc.virtnbdbackup.1.data.idx"));
  Inc(dir.path(), 1, 40);  // rewritten: another inode, other content
  LiveSaveset::Snapshot second = live->Poll();
  EXPECT_NE(ChainOf(*second.state, Cp(1)).files.at(1).get(),
            ChainOf(*first.state, Cp(1)).files.at(1).get());
  EXPECT_NE(second.state->chains.at(Cp(1)), first.state->chains.at(Cp(1)));
  EXPECT_NE(second.state->images.at(Cp(1)).at("vda").get(),
            first.state->images.at(Cp(1)).at("vda").get());
  // An image asked for by the old chain's signature is gone; by the new one it is there.
  auto old = live->Image(Cp(1), "vda", first.state->chains.at(Cp(1)).at("vda"));
  EXPECT_EQ(old.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(live->Image(Cp(1), "vda", second.state->chains.at(Cp(1)).at("vda")).ok());
}

TEST(LiveSavesetTest, AWritersLockHoldsTheReloadBack) {
  ScratchDir dir;
  Full(dir.path());
  auto live = std::make_shared<LiveSaveset>(Local(dir.path()), NoPool());
  const uint64_t before = live->Poll().version;
  int fd = open(dir.path().c_str(), O_RDONLY | O_DIRECTORY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(flock(fd, LOCK_EX), 0);
  Inc(dir.path(), 1);
  LiveSaveset::Snapshot busy = live->Poll();
  EXPECT_EQ(busy.version, before);
  EXPECT_EQ(busy.state->model.latest, Cp(0));
  close(fd);  // the writer is done
  LiveSaveset::Snapshot done = live->Poll();
  EXPECT_NE(done.version, before);
  EXPECT_EQ(done.state->model.latest, Cp(1));
}

TEST(SavesetPoolTest, EvictsLeastRecentlyUsedBeyondTheBound) {
  ScratchDir a, b, c;
  for (const ScratchDir* d : {&a, &b, &c}) {
    Full(d->path());
    Inc(d->path(), 1);
  }
  SavesetPool pool(4);  // two savesets of two files each
  LiveSaveset::Options o{OpenOptions{}, &pool, nullptr};
  auto la = std::make_shared<LiveSaveset>(Local(a.path()), o);
  auto lb = std::make_shared<LiveSaveset>(Local(b.path()), o);
  auto lc = std::make_shared<LiveSaveset>(Local(c.path()), o);
  la->Poll();
  lb->Poll();
  EXPECT_EQ(pool.open_files(), 4u);
  std::shared_ptr<const SavesetState> held = la->Loaded().state;  // a's files stay open here
  lc->Poll();
  EXPECT_EQ(pool.loaded(), 2u);
  EXPECT_LE(pool.open_files(), 4u);
  // a was evicted (least recently used): only `held` keeps its state; its image still reads.
  EXPECT_EQ(held.use_count(), 1);
  auto image = held->images.at(Cp(1)).at("vda");
  std::vector<uint8_t> buf(4096);
  EXPECT_TRUE(image->Get().Read(0, buf).ok());
  EXPECT_TRUE(la->Image(Cp(1), "vda", held->chains.at(Cp(1)).at("vda")).ok());  // loads again
}

LiveTree::Options Immediate() {
  LiveTree::Options o;
  o.poll_interval = std::chrono::milliseconds(0);
  return o;
}

TEST(LiveTreeTest, UnchangedPointsKeepTheirInodesChangedOnesGetNewOnes) {
  ScratchDir dir;
  Full(dir.path());
  Inc(dir.path(), 1);
  LiveTree tree(dir.path(), Immediate());
  auto p0 = tree.Lookup(1, Cp(0));
  auto p1 = tree.Lookup(1, Cp(1));
  auto latest = tree.Lookup(1, "latest");
  ASSERT_TRUE(p0 && p1 && latest);
  EXPECT_EQ(latest->target, Cp(1));
  Inc(dir.path(), 2);
  std::filesystem::remove(dir.File("vda.inc.virtnbdbackup.1.data.idx"));
  Inc(dir.path(), 1, 40);  // point 1 rewritten: its chain changes
  EXPECT_EQ(tree.Lookup(1, Cp(0))->ino, p0->ino);
  auto p1_new = tree.Lookup(1, Cp(1));
  ASSERT_TRUE(p1_new);
  EXPECT_NE(p1_new->ino, p1->ino);
  EXPECT_GT(p1_new->ino, latest->ino);  // numbers come from a counter, never reused
  EXPECT_EQ(tree.Lookup(1, "latest")->target, Cp(2));
  // The old node stays while the kernel holds a lookup of it, and goes with its forget.
  EXPECT_EQ(tree.Get(p1->ino), p1);
  tree.Forget(p1->ino, 1);
  EXPECT_EQ(tree.Get(p1->ino), nullptr);
  EXPECT_EQ(tree.Get(p0->ino), p0);
  tree.Forget(p0->ino, 1);
  EXPECT_EQ(tree.Get(p0->ino), p0);  // looked up twice
  tree.Forget(p0->ino, 1);
  EXPECT_EQ(tree.Get(p0->ino), nullptr);
}

std::vector<std::string> Names(const std::vector<LiveTree::Entry>& entries) {
  std::vector<std::string> out;
  for (const auto& e : entries) out.push_back(e.name);
  return out;
}

TEST(LiveTreeTest, DirectoryOfSavesetsOpensOnlyWhatIsUsed) {
  ScratchDir dir;
  for (const char* name : {"2026-9", "2026-10", "broken-chain.5", ".hidden", "notes"}) {
    std::filesystem::create_directory(dir.File(name));
    if (std::string(name) != "notes") Full(dir.File(name));
  }
  LiveTree tree(dir.path(), Immediate());
  EXPECT_EQ(Names(tree.List(tree.root())),
            (std::vector<std::string>{".", "..", "2026-10", "2026-9", "broken-chain.5", "latest"}));
  EXPECT_EQ(tree.Lookup(1, "latest")->target, "2026-10");  // strverscmp: 9 before 10
  EXPECT_EQ(tree.pool().loaded(), 0u);
  auto month = tree.Lookup(1, "2026-9");
  ASSERT_TRUE(month);
  auto point = tree.Lookup(month->ino, Cp(0));
  ASSERT_TRUE(point);
  EXPECT_TRUE(point->files.count("vda.raw"));
  EXPECT_EQ(tree.pool().loaded(), 1u);
  EXPECT_EQ(tree.pool().open_files(), 1u);
}

}  // namespace
}  // namespace backupfs
