#!/usr/bin/env bash
# DIFFA (v1): decode and score the test sets with the authors' released decoding settings, then RESULTS.md:
#   MMSU                         conf/decode_mmsu.yaml  4/4/4, LLaDA's quota rule
#   MMAU test-mini, MMAR         conf/decode_mcq.yaml   16/16/16, LLaDA's quota rule
#   LibriSpeech test clean/other conf/decode_asr.yaml   128/128/128
# Options go to ../TEMPLATE/decode.sh (./decode.sh --help lists them), e.g.
#   ./decode.sh --model_dir exp/stage2_acoustic --nj 8
#   ./decode.sh --test_sets mmsu --decode_config conf/decode_mcq.yaml --tag mmsu16   # MMSU at 16/16/16
set -euo pipefail
[ -x ../TEMPLATE/decode.sh ] || { echo "$0: run it from its recipe directory: cd $(dirname "$0") && ./decode.sh" >&2; exit 1; }

exec ../TEMPLATE/decode.sh \
  --groups "conf/decode_mmsu.yaml=mmsu;conf/decode_mcq.yaml=mmau_test_mini mmar;conf/decode_asr.yaml=test_clean test_other" \
  --nj 8 \
  --ngpu 1 \
  "$@"
