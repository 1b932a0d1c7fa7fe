#!/usr/bin/env bash
# Synthesise the egs/mini corpus (speech from espeak-ng, beeps/noise/melodies from sox) into
# Kaldi data directories data/{train,dev,test} with tasks.jsonl; wavs go to data/local/wav/.
# Then split train's tasks as DIFFA-2's curriculum has its data: data/train_asr (the transcripts,
# replayed at 5% in stages 4-5) and data/train_qa (the questions), the same clips.
#
# Usage: local/data.sh [--datadir data] [--seed 0] [--nj 2] [--n_train 2000] [--n_dev 150]
#                      [--n_test 300] [--n_sound_train 900] [--n_sound_dev 60] [--n_sound_test 150]
#   Run from egs/mini. Same options -> byte-identical outputs; --nj only sets the parallelism.
#   local/data.sh --help lists every option (local/make_corpus.py does the work).
set -euo pipefail
help=false
case " $* " in *" --help "* | *" -h "*) help=true; sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; echo ;; esac

for prog in espeak-ng sox; do
    if ! $help && ! command -v "$prog" >/dev/null 2>&1; then
        echo "$0: '$prog' not found; install with: apt-get install espeak-ng sox," \
            "or run tools/install.sh" >&2
        exit 1
    fi
done
python=${PYTHON:-python3}
if ! "$python" -c "import diffa" 2>/dev/null; then
    $help && { echo "(source path.sh to list every option)"; exit 0; }
    echo "$0: '$python' cannot import diffa; source path.sh (or tools/activate.sh) first" >&2
    exit 1
fi
exec "$python" "$(dirname "$0")/make_corpus.py" "$@"
