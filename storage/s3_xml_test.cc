// The S3 API's XML as stores send it (namespaced, or not), and as we write it; the lock
// record; the URL encoding SigV4 signs; the part sizes of long uploads.
#include "storage/s3_xml.h"

#include <gtest/gtest.h>

#include "storage/s3_http.h"
#include "storage/s3_lock.h"
#include "storage/s3_writer.h"

namespace backupfs {
namespace {

constexpr const char* kListPage = R"(<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name>
<Prefix>vm1/</Prefix><MaxKeys>2</MaxKeys><Delimiter>/</Delimiter><IsTruncated>true</IsTruncated>
<CommonPrefixes><Prefix>vm1/checkpoints/</Prefix></CommonPrefixes>
<Contents><Key>vm1/vda.full.data</Key><LastModified>2026-11-30T17:18:33.583Z</LastModified>
<ETag>&quot;764efa883dda1e11db47671c4a3bbd9e&quot;</ETag><Size>3</Size></Contents>
<Contents><Key>vm1/a &amp; b</Key><LastModified>2026-11-30T17:18:34Z</LastModified>
<ETag>"abc-7"</ETag><Size>104857600</Size></Contents>
<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
<KeyCount>3</KeyCount></ListBucketResult>)";

TEST(S3Xml, ListObjectsV2Page) {
  auto page = ParseListObjectsV2(kListPage);
  ASSERT_TRUE(page.ok()) << page.status().ToString();
  ASSERT_EQ(page->objects.size(), 2u);
  EXPECT_EQ(page->objects[0].key, "vm1/vda.full.data");
  EXPECT_EQ(page->objects[0].etag, "\"764efa883dda1e11db47671c4a3bbd9e\"");
  EXPECT_EQ(page->objects[0].size, 3u);
  EXPECT_EQ(page->objects[0].mtime_ns, 1796059113583000000);
  EXPECT_EQ(page->objects[1].key, "vm1/a & b");
  EXPECT_EQ(page->objects[1].size, 104857600u);
  EXPECT_EQ(page->common_prefixes, std::vector<std::string>{"vm1/checkpoints/"});
  EXPECT_TRUE(page->truncated);
  EXPECT_EQ(page->next_token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
}

TEST(S3Xml, ElementsMatchWithoutANamespaceToo) {
  auto page = ParseListObjectsV2(
      "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>k</Key>"
      "<LastModified>2026-01-01T00:00:00.000Z</LastModified><ETag>\"e\"</ETag><Size>0</Size>"
      "</Contents></ListBucketResult>");
  ASSERT_TRUE(page.ok()) << page.status().ToString();
  ASSERT_EQ(page->objects.size(), 1u);
  EXPECT_FALSE(page->truncated);
}

TEST(S3Xml, MalformedListingsAreErrors) {
  EXPECT_EQ(ParseListObjectsV2("<ListBucketResult><Contents>").status().code(),
            StatusCode::kIOError);
  EXPECT_EQ(ParseListObjectsV2("").status().code(), StatusCode::kIOError);
  auto wrong_root = ParseListObjectsV2("<Error><Code>x</Code></Error>");
  EXPECT_NE(wrong_root.status().message().find("is a <Error>, not a <ListBucketResult>"),
            std::string::npos);
  auto bad_size = ParseListObjectsV2(
      "<ListBucketResult><Contents><Key>k</Key><Size>-1</Size>"
      "<LastModified>2026-01-01T00:00:00Z</LastModified></Contents></ListBucketResult>");
  EXPECT_NE(bad_size.status().message().find("key 'k', size '-1'"), std::string::npos);
  auto no_token = ParseListObjectsV2(
      "<ListBucketResult><IsTruncated>true</IsTruncated>"
      "</ListBucketResult>");
  EXPECT_FALSE(no_token.ok());
}

TEST(S3Xml, MultipartAnswers) {
  auto id = ParseInitiateMultipartUpload(
      "<?xml version=\"1.0\"?><InitiateMultipartUploadResult "
      "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Bucket>b</Bucket><Key>k</Key>"
      "<UploadId>2~_Gv-x6TWr6KxBBg6gHo_JVR3liUPN1U</UploadId></InitiateMultipartUploadResult>");
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(*id, "2~_Gv-x6TWr6KxBBg6gHo_JVR3liUPN1U");
  EXPECT_FALSE(ParseInitiateMultipartUpload("<InitiateMultipartUploadResult/>").ok());

  auto etag = ParseCompleteMultipartUpload(
      "<CompleteMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
      "<Location>x</Location><Bucket>b</Bucket><Key>k</Key><ETag>\"aa-3\"</ETag>"
      "</CompleteMultipartUploadResult>");
  ASSERT_TRUE(etag.ok());
  EXPECT_EQ(*etag, "\"aa-3\"");

  auto uploads = ParseListMultipartUploads(
      "<ListMultipartUploadsResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
      "<NextKeyMarker>p/up</NextKeyMarker><NextUploadIdMarker>2~x</NextUploadIdMarker>"
      "<IsTruncated>true</IsTruncated><Upload><Key>p/up</Key><UploadId>2~x</UploadId>"
      "<Initiated>2026-11-30T17:18:33.743Z</Initiated></Upload></ListMultipartUploadsResult>");
  ASSERT_TRUE(uploads.ok()) << uploads.status().ToString();
  ASSERT_EQ(uploads->uploads.size(), 1u);
  EXPECT_EQ(uploads->uploads[0].key, "p/up");
  EXPECT_EQ(uploads->uploads[0].upload_id, "2~x");
  EXPECT_EQ(uploads->uploads[0].initiated_ns, 1796059113743000000);
  EXPECT_TRUE(uploads->truncated);
  EXPECT_EQ(uploads->next_key_marker, "p/up");
}

TEST(S3Xml, Errors) {
  auto e = ParseS3Error(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NoSuchKey</Code><Message>The "
      "specified key does not exist.</Message><BucketName>b</BucketName></Error>");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code, "NoSuchKey");
  EXPECT_EQ(e->message, "The specified key does not exist.");
  EXPECT_FALSE(ParseS3Error("").has_value());
  EXPECT_FALSE(ParseS3Error("<html><body>502 Bad Gateway</body></html>").has_value());
  EXPECT_FALSE(ParseS3Error("<Error><Code>cut sh").has_value());
}

TEST(S3Xml, CompleteMultipartUploadRequest) {
  auto xml = CompleteMultipartUploadXml({"\"a\"", "\"b&c\""});
  ASSERT_TRUE(xml.ok());
  EXPECT_EQ(*xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
            "<Part><PartNumber>1</PartNumber><ETag>&quot;a&quot;</ETag></Part>"
            "<Part><PartNumber>2</PartNumber><ETag>&quot;b&amp;c&quot;</ETag></Part>"
            "</CompleteMultipartUpload>\n");
}

TEST(S3Xml, Iso8601) {
  EXPECT_EQ(ParseIso8601("1970-01-01T00:00:01Z"), 1000000000);
  EXPECT_EQ(ParseIso8601("1970-01-01T00:00:00.5Z"), 500000000);
  EXPECT_EQ(ParseIso8601("1970-01-01T00:00:00.123456789Z"), 123456789);
  EXPECT_EQ(ParseIso8601("1970-01-01T00:00:00"), std::nullopt);
  EXPECT_EQ(ParseIso8601("yesterday"), std::nullopt);
}

TEST(S3Lock, RecordRoundTrip) {
  S3LockRecord r;
  r.holder = "backupfs-capture \"quoted\"";
  r.host = "hv1";
  r.pid = 4242;
  r.started_ns = 1796059113000000000;
  r.expires_ns = 1796059413000000000;
  const std::string json = S3LockJson(r);
  EXPECT_NE(json.find("\"expires\":\"2026-11-30T17:23:33Z\""), std::string::npos) << json;
  auto back = ParseS3Lock(json);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->holder, r.holder);
  EXPECT_EQ(back->host, "hv1");
  EXPECT_EQ(back->pid, 4242);
  EXPECT_EQ(back->started_ns, r.started_ns);
  EXPECT_EQ(back->expires_ns, r.expires_ns);
  EXPECT_FALSE(ParseS3Lock("not json").has_value());
  EXPECT_FALSE(ParseS3Lock("{\"holder\":\"x\"}").has_value());  // no expiry: not a lock
  EXPECT_FALSE(ParseS3Lock("[1,2]").has_value());
}

TEST(S3Http, UriEncodeAsSigV4Signs) {
  EXPECT_EQ(UriEncode("AZaz09-_.~", false), "AZaz09-_.~");
  EXPECT_EQ(UriEncode("a b+c=d&e/f", false), "a%20b%2Bc%3Dd%26e%2Ff");
  EXPECT_EQ(UriEncode("vm1/a b/ü", true), "vm1/a%20b/%C3%BC");
}

TEST(S3Writer, PartsGrowSoThatTenThousandHoldLargeDisks) {
  constexpr uint64_t MiB = 1u << 20;
  EXPECT_EQ(S3MultipartWriter::PartSize(16 * MiB, 1), 16 * MiB);
  EXPECT_EQ(S3MultipartWriter::PartSize(16 * MiB, 2500), 16 * MiB);
  EXPECT_EQ(S3MultipartWriter::PartSize(16 * MiB, 2501), 32 * MiB);
  EXPECT_EQ(S3MultipartWriter::PartSize(16 * MiB, 5001), 64 * MiB);
  EXPECT_EQ(S3MultipartWriter::PartSize(16 * MiB, 10000), 64 * MiB);
  EXPECT_EQ(S3MultipartWriter::PartSize(128 * MiB, 9000), 128 * MiB);  // never below the base
  uint64_t total = 0;
  for (unsigned n = 1; n <= S3MultipartWriter::kMaxParts; ++n) {
    total += S3MultipartWriter::PartSize(16 * MiB, n);
  }
  EXPECT_GT(total, uint64_t{400} << 30);
}

}  // namespace
}  // namespace backupfs
