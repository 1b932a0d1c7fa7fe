# Source this file to use diffa's environment: source tools/activate.sh
_diffa_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck disable=SC1091
. "$_diffa_root/.venv/bin/activate"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
unset _diffa_root
