#!/usr/bin/env bash
# Called by diffa.sh after stage 9 (ESPnet's local/score.sh hook): summarise the run into
# RESULTS.md and exp/results.json and print them.
# Usage: local/score.sh --decode_dir DIR --model_dir DIR --elapsed SECONDS
set -euo pipefail
decode_dir=""
model_dir=""
elapsed=0
python=python3
help_message="Usage: local/score.sh --decode_dir exp/<model>/decode_<tag> --model_dir exp/stage4_vrpo --elapsed SECONDS"
. utils/parse_options.sh
[ -n "$decode_dir" ] && [ -n "$model_dir" ] || { echo "$help_message" >&2; exit 1; }
$python local/summarize.py --scores "$decode_dir/test/score/scores.json" \
  --vrpo_log "$model_dir/train_log.txt" --wall_seconds "$elapsed" \
  --results_md RESULTS.md --results_json exp/results.json
