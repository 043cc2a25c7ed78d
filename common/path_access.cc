#include "common/path_access.h"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>

namespace backupfs {

UserIdentity LookupUserIdentity(uid_t uid, gid_t gid) {
  UserIdentity id{uid, gid, {}};
  std::vector<char> buf(16384);
  passwd pw;
  passwd* found = nullptr;
  if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) return id;
  int n = 64;
  std::vector<gid_t> groups(static_cast<size_t>(n));
  if (getgrouplist(pw.pw_name, gid, groups.data(), &n) < 0) {
    groups.resize(static_cast<size_t>(n));
    if (getgrouplist(pw.pw_name, gid, groups.data(), &n) < 0) return id;
  }
  groups.resize(static_cast<size_t>(n));
  id.groups = std::move(groups);
  return id;
}

namespace {

bool MaySearch(const struct stat& st, const UserIdentity& user) {
  if (st.st_uid == user.uid) return (st.st_mode & S_IXUSR) != 0;
  const bool in_group = st.st_gid == user.gid || std::find(user.groups.begin(), user.groups.end(),
                                                           st.st_gid) != user.groups.end();
  if (in_group) return (st.st_mode & S_IXGRP) != 0;
  return (st.st_mode & S_IXOTH) != 0;
}

}  // namespace

Status CheckUserCanReach(const std::string& path, const UserIdentity& user,
                         const std::string& who) {
  if (user.uid == 0) return Status::Ok();
  std::error_code ec;
  const std::filesystem::path full = std::filesystem::canonical(path, ec);
  if (ec) return Status::IOError(path + ": " + ec.message());
  std::filesystem::path prefix;
  for (const auto& part : full) {
    prefix /= part;
    struct stat st;
    if (stat(prefix.c_str(), &st) != 0) return Status::FromErrno(prefix.string(), errno);
    if (!MaySearch(st, user)) {
      char mode[8];
      std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
      return Status::FailedPrecondition(path + " is out of reach of " + who + " (uid " +
                                        std::to_string(user.uid) + "): " + prefix.string() +
                                        " (mode " + mode + ", owner " + std::to_string(st.st_uid) +
                                        ":" + std::to_string(st.st_gid) +
                                        ") does not let it in; choose a directory it can search, " +
                                        "e.g. under /var/lib/libvirt/images or /var/tmp");
    }
  }
  return Status::Ok();
}

}  // namespace backupfs
