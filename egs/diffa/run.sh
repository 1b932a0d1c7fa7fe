#!/usr/bin/env bash
# DIFFA (v1): Whisper-small encoder + frozen LLaDA-8B-Instruct, two training stages (semantic
# alignment on LibriSpeech, then both adapters on synthetic instruction data); no SFT, no VRPO.
# Options go to diffa.sh (./run.sh --help lists them), e.g.
#   ./run.sh --local_data_opts "--corpora_root /corpora" --stop_stage 2 --nj 32
#   ./run.sh --stage 8 --test_sets mmsu --decode_config conf/decode_mmsu.yaml
set -euo pipefail
[ -x diffa.sh ] || { echo "$0: run it from its recipe directory: cd $(dirname "$0") && ./run.sh" >&2; exit 1; }

./diffa.sh \
  --semantic_train_sets train_asr \
  --acoustic_train_sets train_qa \
  --dev_set dev_clean \
  --test_sets "mmsu mmau_test_mini mmar" \
  --n_mels 80 \
  --semantic_config conf/stage1_semantic.yaml \
  --acoustic_config conf/stage2_acoustic.yaml \
  --decode_config conf/decode_mcq.yaml \
  "$@"
