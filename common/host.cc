#include "common/host.h"

#include "common/host_internal.h"

namespace backupfs {

std::string LastLineOf(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
  const size_t nl = text.rfind('\n');
  return std::string(nl == std::string_view::npos ? text : text.substr(nl + 1));
}

std::string ShellQuote(const std::string& word) {
  std::string out = "'";
  for (char c : word) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string ShellCommand(const std::vector<std::string>& argv) {
  std::string line;
  for (const std::string& word : argv) {
    if (!line.empty()) line += ' ';
    line += ShellQuote(word);
  }
  return line;
}

Result<std::string> Host::RunChecked(const std::vector<std::string>& argv) {
  if (argv.empty()) return Status::InvalidArgument("Host::RunChecked: empty argument vector");
  BFS_ASSIGN_OR_RETURN(CommandResult result, Run(argv));
  if (result.exit_code == 0) return std::move(result.out);
  const std::string last = LastLineOf(result.err);
  return Status::IOError(argv[0] + " on " + name() + " exited with " +
                         std::to_string(result.exit_code) +
                         (last.empty() ? " (no message)" : ": " + last));
}

}  // namespace backupfs
