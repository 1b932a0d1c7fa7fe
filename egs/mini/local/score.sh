#!/usr/bin/env bash
# Called by diffa.sh after stage 9 (ESPnet's local/score.sh hook): summarise a whole run
# (./run.sh from stage 1) into RESULTS.md and exp/results.json and print them. A run that starts
# later (e.g. ./decode.sh, another model or decoding setting) leaves them as they are: its wall time
# is not the recipe's and its scores are in exp/decode_results.md and under --decode_dir.
# Usage: local/score.sh --decode_dir DIR --model_dir DIR --stage N --elapsed SECONDS
set -euo pipefail
decode_dir=""  # exp/<model>/decode_<tag>: its test/score/scores.json is summarised
model_dir=""   # the decoded model (its train_log.txt gives the VRPO preference accuracies; the SFT
               # and stage-4 logs beside it the dev loss over SFT)
stage=1        # the first stage of the run; only a run from stage 1 is summarised
elapsed=0      # the run's wall time in seconds
python=${PYTHON:-python3} # Python interpreter (diffa.sh exports its --python as PYTHON)
help_message=$(sed -n '2,/^[^#]/{/^#/{s/^# \{0,1\}//;p}}' "$0")  # the comment at the top
. utils/parse_options.sh
[ -n "$decode_dir" ] && [ -n "$model_dir" ] ||
  { echo "local/score.sh: --decode_dir and --model_dir are required (see --help)" >&2; exit 1; }
if [ "$stage" != 1 ]; then
  echo "local/score.sh: RESULTS.md summarises whole runs (./run.sh from stage 1); left as it is." \
    "Scores of this run: $decode_dir/*/score/"
  exit 0
fi
exp=$(dirname "$model_dir")
$python local/summarize.py --scores "$decode_dir/test/score/scores.json" \
  --vrpo_log "$model_dir/train_log.txt" --wall_seconds "$elapsed" \
  --sft_logs "$exp/stage2_acoustic/train_log.txt" "$exp/stage3_sft/train_log.txt" \
  --results_md RESULTS.md --results_json exp/results.json
