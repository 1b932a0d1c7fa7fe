#!/usr/bin/env bash
# Turn command-line options into shell variables. Source this file after setting defaults:
#
#     stage=1        # first stage to run
#     force=false    # redo finished stages
#     help_message="Usage: $0 [options] <data-dir>"
#     . utils/parse_options.sh
#
# Then `--stage 3 --force true data/train` sets stage=3 and force=true and leaves "data/train" in
# "$@". Rules:
#   * An option is a lower-case shell variable defined (not exported) before sourcing this file,
#     except help_message. `--foo-bar` is the same as `--foo_bar`; `--foo_bar=v` works too.
#   * An unknown option is an error that lists the valid ones; so is a missing value.
#   * Options whose default is true/false only accept true or false (`--force true`).
#   * Parsing stops at the first argument that does not start with "--", or after "--".
#   * `--help` or `-h` prints $help_message, then every option with its current value and the
#     comment written after its default in the sourcing script, and exits 0.
# Running this file directly (`utils/parse_options.sh --help`) prints this text.

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"
  exit 0
fi

# Names of the caller's options, one per line: lower-case, non-exported, scalar shell variables.
_po_option_names() {
  local _po_decl _po_flags _po_rest
  while read -r _po_decl _po_flags _po_rest; do
    [[ $_po_decl == declare ]] || continue
    [[ $_po_flags == *x* || $_po_flags == *a* || $_po_flags == *A* ]] && continue
    _po_rest=${_po_rest%%=*}
    [[ $_po_rest =~ ^[a-z][a-z0-9_]*$ && $_po_rest != help_message ]] && echo "$_po_rest"
  done < <(declare -p)
}

_po_usage() {
  local _po_script=${BASH_SOURCE[2]:-$0} _po_name _po_doc
  [ -n "${help_message:-}" ] && echo -e "$help_message"
  echo "Options (current value; comment from ${_po_script##*/}):"
  for _po_name in $(_po_option_names); do
    _po_doc=$(sed -n "/^${_po_name}=[^#]*#/{s/^[^#]*#[[:space:]]*//p;q}" "$_po_script" 2>/dev/null)
    printf '  --%-22s %-18s %s\n' "$_po_name" "(${!_po_name})" "$_po_doc"
  done
}

_po_die() {
  echo "${0##*/}: $1" >&2
  exit 1
}

_po_missing=""
while [ $# -gt 0 ]; do
  case "$1" in
    --help | -h)
      _po_usage
      exit 0
      ;;
    --)
      shift
      break
      ;;
    --*=*)
      _po_name=${1%%=*}
      _po_value=${1#*=}
      shift
      ;;
    --*)
      _po_name=$1
      _po_value=${2-}
      [ $# -ge 2 ] && shift 2 || _po_missing=1
      ;;
    *) break ;;
  esac
  _po_name=${_po_name#--}
  _po_name=${_po_name//-/_}
  _po_names=$'\n'$(_po_option_names)$'\n'
  if [[ $_po_names != *$'\n'"$_po_name"$'\n'* ]]; then
    _po_die "unknown option --$_po_name; valid options: $(_po_option_names | sed 's/^/--/' | tr '\n' ' ')(see --help)"
  fi
  # checked after the name, so that a misspelt last option is reported as unknown
  [ -z "$_po_missing" ] || _po_die "option --$_po_name needs a value"
  case "${!_po_name}" in
    true | false)
      [[ $_po_value == true || $_po_value == false ]] ||
        _po_die "option --$_po_name takes true or false, got '$_po_value'"
      ;;
  esac
  printf -v "$_po_name" '%s' "$_po_value"
done

unset -f _po_option_names _po_usage _po_die
unset _po_name _po_value _po_names _po_missing
true
