// The XML of the S3 API: parsing the answers the client needs and writing the one request
// body it sends (CompleteMultipartUpload). Elements are matched by local name whatever their
// namespace: AWS, Ceph and MinIO answer in the S3 namespace, some stores in another or none.
// Malformed or unexpected XML is an IOError saying which answer it was.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "stream/status.h"

namespace backupfs {

struct S3ObjectInfo {
  std::string key;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  std::string etag;  // as the store sends it, quotes included
};

struct S3ListPage {
  std::vector<S3ObjectInfo> objects;
  std::vector<std::string> common_prefixes;  // full keys, ending in the delimiter
  bool truncated = false;
  std::string next_token;  // NextContinuationToken, when truncated
};

struct S3Upload {
  std::string key;
  std::string upload_id;
  int64_t initiated_ns = 0;
};

struct S3UploadsPage {
  std::vector<S3Upload> uploads;
  bool truncated = false;
  std::string next_key_marker;
  std::string next_upload_id_marker;
};

// An <Error> answer's Code and Message.
struct S3ErrorBody {
  std::string code;
  std::string message;
};

Result<S3ListPage> ParseListObjectsV2(std::string_view xml);
Result<S3UploadsPage> ParseListMultipartUploads(std::string_view xml);
// The UploadId of an InitiateMultipartUploadResult.
Result<std::string> ParseInitiateMultipartUpload(std::string_view xml);
// The ETag of a CompleteMultipartUploadResult.
Result<std::string> ParseCompleteMultipartUpload(std::string_view xml);
// UploadPartCopy's answer: <CopyPartResult><ETag>...</ETag></CopyPartResult>; the part's ETag.
Result<std::string> ParseCopyPartResult(std::string_view xml);
// nullopt when `xml` is not an <Error> document (an empty body, HTML from a proxy).
std::optional<S3ErrorBody> ParseS3Error(std::string_view xml);

// The CompleteMultipartUpload request body: part i + 1 has etags[i].
Result<std::string> CompleteMultipartUploadXml(const std::vector<std::string>& etags);

// "2026-11-30T17:05:14.000Z" as nanoseconds since the epoch; nullopt when malformed.
std::optional<int64_t> ParseIso8601(std::string_view text);

}  // namespace backupfs
