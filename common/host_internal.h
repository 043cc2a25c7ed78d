// Pieces the Host implementations share (private to common/).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace backupfs {

// The last non-empty line of `text` (a program's stderr), "" when there is none.
std::string LastLineOf(std::string_view text);

// `word` quoted for a POSIX shell: '...' with each ' written as '\''. Nothing inside is
// interpreted: spaces, $(...), backquotes, globs and newlines arrive verbatim.
std::string ShellQuote(const std::string& word);
// argv as one shell command line, each word quoted.
std::string ShellCommand(const std::vector<std::string>& argv);

}  // namespace backupfs
