#include "backupfs/saveset_pool.h"

#include <vector>

#include "backupfs/live_saveset.h"

namespace backupfs {

void SavesetPool::Used(const std::shared_ptr<LiveSaveset>& s, size_t open_files) {
  std::vector<std::shared_ptr<LiveSaveset>> victims;
  {
    MutexLock l(mu_);
    entries_[s.get()] = {s, open_files, ++tick_};
    size_t total = 0;
    for (auto it = entries_.begin(); it != entries_.end();) {
      if (it->second.saveset.expired()) {
        it = entries_.erase(it);
      } else {
        total += it->second.open_files;
        ++it;
      }
    }
    while (total > max_) {
      auto lru = entries_.end();
      for (auto it = entries_.begin(); it != entries_.end(); ++it) {
        if (it->first != s.get() &&
            (lru == entries_.end() || it->second.last_use < lru->second.last_use)) {
          lru = it;
        }
      }
      if (lru == entries_.end()) break;
      total -= lru->second.open_files;
      if (auto victim = lru->second.saveset.lock()) victims.push_back(std::move(victim));
      entries_.erase(lru);
    }
  }
  for (const auto& v : victims) v->Evict();
}

size_t SavesetPool::open_files() const {
  MutexLock l(mu_);
  size_t total = 0;
  for (const auto& [key, e] : entries_) total += e.saveset.expired() ? 0 : e.open_files;
  return total;
}

size_t SavesetPool::loaded() const {
  MutexLock l(mu_);
  size_t n = 0;
  for (const auto& [key, e] : entries_) n += e.saveset.expired() ? 0 : 1;
  return n;
}

}  // namespace backupfs
