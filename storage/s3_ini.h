// The INI dialect of the AWS shared files (~/.aws/config and ~/.aws/credentials), as botocore
// reads them: `[section]` headers, `key = value` (or `key: value`) lines, `#` and `;` comment
// lines, keys matched without regard to case, section names as written. An indented line under
// a key with an empty value is a nested setting of that key:
//
//   [profile ceph]
//   s3 =
//     endpoint_url = http://127.0.0.1:7480
//
// is the key "s3.endpoint_url". A `#` or `;` after whitespace starts an inline comment (as the
// AWS SDKs read it; access keys and URLs never contain one). Lines that are none of these are
// ignored, as the SDKs do with what they do not understand.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace backupfs {

class IniFile {
 public:
  static IniFile Parse(std::string_view text);

  bool HasSection(const std::string& section) const { return sections_.count(section) != 0; }
  // The value of `key` (lower case; "s3.endpoint_url" for a nested one) in `section`.
  std::optional<std::string> Get(const std::string& section, const std::string& key) const;

 private:
  std::map<std::string, std::map<std::string, std::string>> sections_;
};

}  // namespace backupfs
