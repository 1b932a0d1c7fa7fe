#!/usr/bin/env bash
# Install diffa into <repo>/.venv with pinned dependencies, plus the programs the recipes need.
#
# Usage: tools/install.sh [--force]
#
#   - system programs: espeak-ng and sox (egs/mini synthesises its corpus with them) and bats
#     (shell tests), through apt when missing and running as root; otherwise says what to install;
#   - .venv at the repository root, made with uv when available (about 10x faster), pip otherwise;
#   - tools/requirements.txt under tools/constraints.txt (CPU torch is pinned there, so nothing can
#     pull a multi-GB CUDA build), then diffa itself in editable mode;
#   - a one-line import check.
# A second run compares a stamp of the requirement files and returns in seconds; --force reinstalls.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"
stamp="$venv/.diffa-install-stamp"
force=false
case "${1:-}" in
    --force) force=true ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    "") ;;
    *) echo "$0: unknown option '$1' (valid: --force, --help)" >&2; exit 2 ;;
esac

log() { echo "[install $(date +%H:%M:%S)] $*"; }

# ---- system programs -------------------------------------------------------------------------
missing=()
for prog in espeak-ng sox bats; do
    command -v "$prog" >/dev/null 2>&1 || missing+=("$prog")
done
if [ ${#missing[@]} -gt 0 ]; then
    pkgs=()
    for prog in "${missing[@]}"; do
        case "$prog" in bats) pkgs+=(bats) ;; *) pkgs+=("$prog") ;; esac
    done
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "installing ${pkgs[*]} with apt-get"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
    else
        echo "tools/install.sh: missing programs: ${missing[*]}." >&2
        echo "  Install them, e.g.: sudo apt-get install ${pkgs[*]}   (or: brew install ${pkgs[*]})" >&2
        echo "  egs/mini needs espeak-ng and sox to synthesise its corpus; bats runs the shell tests." >&2
        exit 1
    fi
fi

# ---- python environment ----------------------------------------------------------------------
want=$(cat "$root/tools/requirements.txt" "$root/tools/constraints.txt" "$root/setup.py" | sha256sum | cut -d' ' -f1)
if ! $force && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$venv/bin/python" -c "import diffa" 2>/dev/null; then
    log "environment up to date ($venv)"
    exit 0
fi

find_links=()
[ -n "${PIP_FIND_LINKS:-}" ] && find_links=(--find-links "$PIP_FIND_LINKS")
python=${PYTHON:-python3}
if command -v uv >/dev/null 2>&1 || "$python" -m pip install -q uv >/dev/null 2>&1; then
    uv=$(command -v uv || echo "$python -m uv")
    log "creating $venv with uv"
    [ -x "$venv/bin/python" ] || $uv venv -q --python "$python" "$venv"
    # uv ignores pip's configuration: pass the local wheel folder explicitly, and compile bytecode
    # (PYTHONDONTWRITEBYTECODE may be set, which would make every import twice as slow).
    pip_install() { $uv pip install -q --python "$venv/bin/python" --compile-bytecode "${find_links[@]}" "$@"; }
else
    log "creating $venv with venv + pip"
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    pip_install() { "$venv/bin/python" -m pip install -q "$@"; }
fi
log "installing requirements (pinned by tools/constraints.txt)"
pip_install -c "$root/tools/constraints.txt" -r "$root/tools/requirements.txt"
pip_install -c "$root/tools/constraints.txt" --no-deps -e "$root"

# ---- torchaudio on CPU torch -----------------------------------------------------------------
# The newest torchaudio on the registry (2.11) is a CUDA build with no torch pin. Its compiled
# extension (torchaudio/lib/*.so) cannot load against the CPU torch, and the failed load also
# breaks `import speechbrain`, transformers' audio utilities and peft. torchaudio works without
# it in pure Python (kaldi fbank, MelSpectrogram, Resample); only forced_align, rnnt_loss and its
# own load/save need the extension, and diffa uses soundfile for audio I/O instead. So: when the
# extension does not load, remove it.
if ! "$venv/bin/python" - <<'EOF' 2>/dev/null
import torch, torchaudio, glob, os, ctypes
for so in glob.glob(os.path.join(os.path.dirname(torchaudio.__file__), "lib", "*.so")):
    ctypes.CDLL(so)
import speechbrain  # noqa: F401
EOF
then
    tadir=$("$venv/bin/python" -c "import importlib.util, os; print(os.path.dirname(importlib.util.find_spec('torchaudio').origin))")
    log "torchaudio's compiled extension does not load on this torch: removing $tadir/lib/*.so (pure-Python fallback)"
    rm -f "$tadir"/lib/*.so
fi

# ---- check -----------------------------------------------------------------------------------
"$venv/bin/python" -c "import torch, torchaudio, speechbrain, transformers, peft, kaldiio, sentencepiece, soundfile, diffa; print('diffa environment OK: torch', torch.__version__, '| transformers', transformers.__version__, '| speechbrain', speechbrain.__version__)"
echo "$want" > "$stamp"
log "done; activate with: source $root/tools/activate.sh"
