#!/usr/bin/env bash
# egs/mini: decode and score the synthetic test set (ASR, multiple-choice and open questions,
# conf/decode.yaml) with the last model trained by ./run.sh. RESULTS.md is the run's summary that
# local/score.sh writes after stage 9; the table of every decoded model and set under exp/ goes to
# exp/decode_results.md. Options go to
# ../TEMPLATE/decode.sh (./decode.sh --help lists them), e.g.
#   ./decode.sh
#   ./decode.sh --model_dir exp/stage3_sft --tag sft
#   ./decode.sh --decode_opts "--factor none --steps 16" --tag quota   # LLaDA's quota rule instead
set -euo pipefail
[ -x ../TEMPLATE/decode.sh ] || { echo "$0: run it from its recipe directory: cd $(dirname "$0") && ./decode.sh" >&2; exit 1; }

exec ../TEMPLATE/decode.sh \
  --groups "conf/decode.yaml=test" \
  --nj 2 \
  --results_md exp/decode_results.md \
  "$@"
