#!/usr/bin/env bash
# Run diffa's test suite (unit tests, doctests, shell-tool tests and the egs/mini end-to-end run).
# Usage: tools/test.sh [pytest args...]     e.g. tools/test.sh -m "not slow"  (skip the recipe run)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck disable=SC1091
. tools/activate.sh
exec python -m pytest "$@"
