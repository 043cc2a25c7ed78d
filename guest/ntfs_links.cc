#include "guest/ntfs_links.h"

#include "guest/ntfs_node.h"

namespace backupfs::ntfs {
namespace {

constexpr size_t kMaxLinkBytes = 4095;        // PATH_MAX - 1
constexpr size_t kMaxDepth = 4096;            // parents walked up from a reparse point
constexpr size_t kMaxStreams = 4096;          // named data streams of one inode
constexpr int64_t kMaxXattrValue = 64 << 10;  // XATTR_SIZE_MAX

// --- reparse points ---------------------------------------------------------------------------

// The MFT record of the directory holding `ni`'s first name.
Result<uint64_t> ParentOf(Volume& v, ntfs_inode* ni, const LogCapture& log) REQUIRES(v.mu) {
  SearchCtxPtr ctx(ntfs_attr_get_search_ctx(ni, nullptr));
  if (!ctx) return v.Error(ni->mft_no, "cannot search attributes", errno, log);
  if (ntfs_attr_lookup(AT_FILE_NAME, AT_UNNAMED, 0, CASE_SENSITIVE, 0, nullptr, 0, ctx.get()) ||
      ctx->attr->non_resident ||
      le32_to_cpu(ctx->attr->value_length) < offsetof(FILE_NAME_ATTR, file_name)) {
    return v.Error(ni->mft_no, "no usable $FILE_NAME attribute", errno, log);
  }
  auto* fn = reinterpret_cast<const FILE_NAME_ATTR*>(reinterpret_cast<const uint8_t*>(ctx->attr) +
                                                     le16_to_cpu(ctx->attr->value_offset));
  return static_cast<uint64_t>(MREF_LE(fn->parent_directory));
}

// How many directories lie between the root and the directory holding `ni`.
Result<size_t> DepthOf(Volume& v, ntfs_inode* ni, const LogCapture& log) REQUIRES(v.mu) {
  BFS_ASSIGN_OR_RETURN(uint64_t parent, ParentOf(v, ni, log));
  for (size_t depth = 0; depth < kMaxDepth; ++depth) {
    if (parent == FILE_root) return depth;
    BFS_ASSIGN_OR_RETURN(InodePtr p, v.OpenInode(parent, log));
    BFS_ASSIGN_OR_RETURN(parent, ParentOf(v, p.get(), log));
  }
  return v.Error(
      ni->mft_no,
      "more than " + std::to_string(kMaxDepth) + " parent directories up to the root (a loop?)", 0,
      log);
}

// --- named data streams -----------------------------------------------------------------------

// As ntfs-3g's user_xattrs_allowed: regular files and directories (and the root).
bool UserXattrsAllowed(ntfs_inode* ni) {
  if (!(ni->flags & (FILE_ATTR_SYSTEM | FILE_ATTR_REPARSE_POINT)) || ni->mft_no == FILE_root)
    return true;
  if (IsReparse(ni) || ni->mft_no < FILE_first_user) return false;
  const u32 t = ntfs_interix_types(ni);
  return t == NTFS_DT_REG || t == NTFS_DT_DIR;
}

Result<std::vector<std::vector<ntfschar>>> StreamNames(Volume& v, ntfs_inode* ni,
                                                       const LogCapture& log) REQUIRES(v.mu) {
  SearchCtxPtr ctx(ntfs_attr_get_search_ctx(ni, nullptr));
  if (!ctx) return v.Error(ni->mft_no, "cannot search attributes", errno, log);
  std::vector<std::vector<ntfschar>> names;
  while (!ntfs_attr_lookup(AT_DATA, nullptr, 0, CASE_SENSITIVE, 0, nullptr, 0, ctx.get())) {
    const ATTR_RECORD* a = ctx->attr;
    if (a->name_length == 0) continue;
    if (names.size() >= kMaxStreams) {
      return v.Error(ni->mft_no, "more than " + std::to_string(kMaxStreams) + " data streams", 0,
                     log);
    }
    auto* p = reinterpret_cast<const ntfschar*>(reinterpret_cast<const uint8_t*>(a) +
                                                le16_to_cpu(a->name_offset));
    names.emplace_back(p, p + a->name_length);
  }
  if (errno != ENOENT) return v.Error(ni->mft_no, "cannot list the data streams", errno, log);
  return names;
}

}  // namespace

Result<std::string> ReparseTarget(Volume& v, ntfs_inode* ni, const LogCapture& log) {
  errno = 0;
  CPtr<char> made(ntfs_make_symlink(ni, ""));
  std::string target;
  if (made) {
    target = made.get();
  } else if (errno == EOPNOTSUPP) {
    CPtr<REPARSE_POINT> rp(ntfs_get_reparse_point(ni));
    char text[64];
    snprintf(text, sizeof(text), "unsupported reparse tag 0x%08lx",
             rp ? static_cast<unsigned long>(le32_to_cpu(rp->reparse_tag)) : 0UL);
    return std::string(text);
  } else {
    return v.Error(ni->mft_no, "cannot read the reparse point", errno, log);
  }
  if (!target.empty() && target[0] == '/') {
    BFS_ASSIGN_OR_RETURN(size_t depth, DepthOf(v, ni, log));
    std::string rel;
    for (size_t i = 0; i < depth; ++i) rel += "../";
    rel += target.substr(target.find_first_not_of('/') == std::string::npos
                             ? target.size()
                             : target.find_first_not_of('/'));
    if (rel.empty()) rel = ".";
    target = std::move(rel);
  }
  if (target.size() > kMaxLinkBytes) {
    return v.Error(ni->mft_no, "a symlink target of " + std::to_string(target.size()) + " bytes", 0,
                   log);
  }
  return target;
}

Result<std::string> LinkTarget(Volume& v, uint64_t ino, const LogCapture& log) {
  BFS_ASSIGN_OR_RETURN(InodePtr ni, v.OpenInode(ino, log));
  if (IsReparse(ni.get())) return ReparseTarget(v, ni.get(), log);
  if (!IsDir(ni.get()) && (ni->flags & FILE_ATTR_SYSTEM)) {
    BFS_ASSIGN_OR_RETURN(Interix intx, ReadInterix(v, ni.get(), log));
    if (S_ISLNK(intx.type)) {
      if (intx.target.size() > kMaxLinkBytes) {
        return v.Error(ino, "a symlink target of " + std::to_string(intx.target.size()) + " bytes",
                       0, log);
      }
      return intx.target;
    }
  }
  return Status::InvalidArgument(v.name() + ": MFT record " + std::to_string(ino) +
                                 ": not a symlink");
}

Result<std::vector<std::pair<std::string, std::string>>> StreamXattrs(Volume& v, uint64_t ino,
                                                                      const LogCapture& log) {
  BFS_ASSIGN_OR_RETURN(InodePtr ni, v.OpenInode(ino, log));
  std::vector<std::pair<std::string, std::string>> out;
  if (!UserXattrsAllowed(ni.get())) return out;
  BFS_ASSIGN_OR_RETURN(auto names, StreamNames(v, ni.get(), log));
  for (const std::vector<ntfschar>& name : names) {
    std::string utf8;
    Status converted = ToUtf8Into(name.data(), static_cast<int>(name.size()), &utf8);
    if (!converted.ok()) {
      return converted.WithPrefix(v.name() + ": MFT record " + std::to_string(ino) +
                                  ": data stream");
    }
    // ntfs-3g keeps its own attributes of other namespaces in streams named "ntfs-3g.*" and
    // hides them when longer than its prefix and NUL (strlen > sizeof "ntfs-3g.").
    if (utf8.size() > 9 && utf8.compare(0, 8, "ntfs-3g.") == 0) continue;
    AttrPtr na(ntfs_attr_open(ni.get(), AT_DATA, const_cast<ntfschar*>(name.data()), name.size()));
    if (!na) return v.Error(ino, "cannot open stream " + utf8, errno, log);
    if (na->data_size > kMaxXattrValue) {
      v.Note(v.name() + ": MFT record " + std::to_string(ino) + ": stream " + utf8 + " of " +
             std::to_string(na->data_size) + " bytes is too large for an xattr, not shown");
      continue;
    }
    BFS_ASSIGN_OR_RETURN(std::vector<uint8_t> value,
                         ReadSmall(v, na.get(), ino, kMaxXattrValue, log));
    out.emplace_back("user." + utf8, std::string(value.begin(), value.end()));
  }
  return out;
}

}  // namespace backupfs::ntfs
