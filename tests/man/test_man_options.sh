#!/usr/bin/env bash
# Usage: test_man_options.sh BUILD_DIR SOURCE_DIR
#
# For every program that has a man page SOURCE_DIR/man/<program>.1 and a binary
# BUILD_DIR/tools/<program>, runs `<program> --help`, collects every short and long option
# it prints, and fails, listing them, when an option does not appear in the page's roff
# source (as "\-i" / "\-\-input" or plain "-i" / "--input"). Fails too when no program
# could be checked at all, so that a missing build does not pass silently.
#
# Two formats of --help are understood:
#   - CLI11's ("  -i,--input TEXT REQUIRED"), as backupfs-restore prints it;
#   - a FUSE program's (backupfs): a line "<program> options:", then our own options, one a
#     line ("    -o uid=N   owner ...", "    -V, --version   ..."), up to the first blank
#     line, after which libfuse's help (fuse_cmdline_help, fuse_lowlevel_help) follows; only
#     our part is checked. For "-o name=VALUE" the page must contain "name=", for "-o name"
#     the word "name".
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 BUILD_DIR SOURCE_DIR" >&2
  exit 2
fi
build_dir=$1
source_dir=$2

# The options a CLI11 --help text lists, one per line. An option line starts with blanks and
# a dash; its first field holds the names separated by commas ("-i,--input"), possibly
# followed by a type ("TEXT:{dump,verify}"). Names are read until the first word that is not
# an option name, so validator text (ranges, sets) is never taken for an option.
options_of_help() {
  local line spec token
  while IFS= read -r line; do
    [[ $line =~ ^[[:space:]]+- ]] || continue
    spec=${line#"${line%%[![:space:]]*}"}  # strip leading blanks
    spec=${spec%%  *}                       # the description starts after two blanks
    spec=${spec//,/ }
    for token in $spec; do
      token=${token%%\{*}  # CLI11 may append a default flag value: --no-x{false}
      [[ $token =~ ^--?[A-Za-z0-9][A-Za-z0-9_-]*$ ]] || break
      printf '%s\n' "$token"
    done
  done
}

# The options of our own part of a FUSE program's --help (see the top), one per line: "-f",
# "--version", "uid=" (for "-o uid=N"), "allow_other" (for "-o allow_other"). Reading starts
# after the line "<program> options:" and stops at the first blank line after an option, where
# libfuse's own help begins.
options_of_fuse_help() {
  local program=$1 line spec token in_ours=0 seen=0
  local -a words
  while IFS= read -r line; do
    if [[ $in_ours -eq 0 ]]; then
      [[ $line == "$program options:" ]] && in_ours=1
      continue
    fi
    if [[ -z ${line//[[:space:]]/} ]]; then
      [[ $seen -eq 1 ]] && break
      continue
    fi
    [[ $line =~ ^[[:space:]]+- ]] || continue
    spec=${line#"${line%%[![:space:]]*}"}  # strip leading blanks
    spec=${spec%%  *}                       # the description starts after two blanks
    spec=${spec//,/ }
    read -r -a words <<<"$spec"
    if [[ ${words[0]} == -o && ${#words[@]} -ge 2 ]]; then
      token=${words[1]}
      if [[ $token == *=* ]]; then
        token=${token%%=*}=
      fi
      [[ $token =~ ^[A-Za-z0-9][A-Za-z0-9_-]*=?$ ]] || continue
      printf '%s\n' "$token"
      seen=1
      continue
    fi
    for token in "${words[@]}"; do
      [[ $token =~ ^--?[A-Za-z0-9][A-Za-z0-9_-]*$ ]] || break
      printf '%s\n' "$token"
      seen=1
    done
  done
}

# True when `help` is a FUSE program's --help: it has the line "<program> options:".
is_fuse_help() {
  local program=$1 help=$2
  grep -Fxq -- "$program options:" <<<"$help"
}

# The roff source with the escapes that may hide an option undone: "\-" is a minus sign,
# "\&" and "\%" are zero-width, "\f?" / "\f(??" / "\f[...]" change the font.
plain_page() {
  sed -e 's/\\-/-/g' -e 's/\\[&%]//g' -e 's/\\f\[[^]]*\]//g' -e 's/\\f([A-Za-z][A-Za-z]//g' \
    -e 's/\\f[A-Za-z0-9]//g' "$1"
}

# True when `option` occurs in `text` as a whole word: not inside a longer option
# ("-i" in "--input" or "-iX", "--in" in "--input"). An option ending in "=" ("uid=", from
# "-o uid=N") is followed by its value, so only its start must be a word boundary.
page_mentions() {
  local text=$1 option=$2
  if [[ $option == *= ]]; then
    grep -Eq -- "(^|[^A-Za-z0-9_-])${option}" <<<"$text"
  else
    grep -Eq -- "(^|[^A-Za-z0-9_-])${option}($|[^A-Za-z0-9_-])" <<<"$text"
  fi
}

checked=0
failed=0
shopt -s nullglob
for page in "$source_dir"/man/*.1; do
  program=$(basename "$page" .1)
  binary=$build_dir/tools/$program
  if [[ ! -x $binary ]]; then
    echo "skip: $page: no program $binary"
    continue
  fi
  rc=0
  help=$("$binary" --help 2>&1) || rc=$?
  if [[ $rc -ne 0 ]]; then
    echo "FAIL: $binary --help exited with status $rc" >&2
    failed=1
    continue
  fi
  if is_fuse_help "$program" "$help"; then
    mapfile -t options < <(options_of_fuse_help "$program" <<<"$help")
  else
    mapfile -t options < <(options_of_help <<<"$help")
  fi
  if [[ ${#options[@]} -eq 0 ]]; then
    echo "FAIL: $binary --help lists no options; cannot parse its output:" >&2
    echo "$help" >&2
    failed=1
    continue
  fi
  text=$(plain_page "$page")
  missing=()
  for option in "${options[@]}"; do
    page_mentions "$text" "$option" || missing+=("$option")
  done
  checked=$((checked + 1))
  if [[ ${#missing[@]} -gt 0 ]]; then
    echo "FAIL: $page does not document these options of $program --help: ${missing[*]}" >&2
    failed=1
  else
    echo "ok: $page documents all ${#options[@]} options of $program: ${options[*]}"
  fi
done

if [[ $checked -eq 0 && $failed -eq 0 ]]; then
  echo "FAIL: no program with a man page in $source_dir/man was found in $build_dir/tools" >&2
  exit 1
fi
exit "$failed"
