#!/usr/bin/env bash
# DIFFA-2: decode and score the test sets with the authors' released decoding settings, then RESULTS.md:
#   MMSU, MMAU test-mini, MMAR   conf/decode_mcq.yaml  16/16/16, factor-based parallel decoding f = 1.0
#   LibriSpeech test clean/other conf/decode_asr.yaml  128/128/128, factor-based parallel decoding f = 1.0
# Options go to ../TEMPLATE/decode.sh (./decode.sh --help lists them), e.g.
#   ./decode.sh --model_dir exp/stage4_vrpo --nj 8
#   ./decode.sh --test_sets mmsu --decode_opts "--factor none" --tag quota16   # the paper's 60.45 setting
#   ./decode.sh --decode_opts "--audio_dtype same" --tag bf16   # encoder and adapters in bfloat16 too
#     (1.4 GB less GPU memory; the default float32 audio side is the authors' inference)
set -euo pipefail
[ -x ../TEMPLATE/decode.sh ] || { echo "$0: run it from its recipe directory: cd $(dirname "$0") && ./decode.sh" >&2; exit 1; }

exec ../TEMPLATE/decode.sh \
  --groups "conf/decode_mcq.yaml=mmsu mmau_test_mini mmar;conf/decode_asr.yaml=test_clean test_other" \
  --nj 8 \
  --ngpu 1 \
  "$@"
