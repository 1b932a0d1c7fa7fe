# shellcheck shell=bash
# Sourced by diffa.sh from a recipe directory (egs/<recipe>, where path.sh links here): the
# repository's virtualenv, the recipe's utils/ on PATH, and no downloads from the Hugging Face hub.
MAIN_ROOT=$(cd ../.. && pwd)
if [ ! -f "$MAIN_ROOT/.venv/bin/activate" ]; then
  echo "path.sh: no $MAIN_ROOT/.venv: run $MAIN_ROOT/tools/install.sh first" >&2
  return 1 2>/dev/null || exit 1
fi
# shellcheck disable=SC1091
. "$MAIN_ROOT/tools/activate.sh"
export PATH=$PWD/utils:$PATH
export HF_HUB_OFFLINE=1
export PYTHONUNBUFFERED=1
