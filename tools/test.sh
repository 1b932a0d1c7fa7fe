#!/usr/bin/env bash
# Run diffa's test suite (unit tests, doctests, shell-tool tests and the egs/mini end-to-end run).
# Usage: tools/test.sh [pytest args...]     e.g. tools/test.sh -m "not slow"  (skip the end-to-end runs)
set -euo pipefail
case "${1:-}" in
    -h|--help)
        sed -n '2,3p' "$0" | sed 's/^# \{0,1\}//'
        echo "Other arguments go to pytest; 'tools/test.sh --pytest-help' lists pytest's own options."
        exit 0 ;;
    --pytest-help) set -- --help ;;
esac
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck disable=SC1091
. tools/activate.sh
exec python -m pytest "$@"
