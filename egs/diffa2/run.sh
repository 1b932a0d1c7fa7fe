#!/usr/bin/env bash
# DIFFA-2: Whisper-large-v3 encoder + LLaDA-8B-Instruct, four-stage curriculum (semantic alignment
# on ASR, acoustic alignment and SFT on audio QA with ASR replay, VRPO on preference pairs).
# Curriculum stages 2 and 3 (recipe stages 4 and 5) train on data/train_qa_stage2 and
# data/train_qa_stage3: the authors' two indices, or links to data/train_qa when local/data.sh gets
# one QA index for both (local/README.md).
# Options go to diffa.sh (./run.sh --help lists them), e.g.
#   ./run.sh --local_data_opts "--corpora_root /corpora" --stop_stage 2 --nj 32
#   ./run.sh --stage 3 --ngpu 8                      # training stages on 8 GPUs (torchrun)
#   ./run.sh --stage 2 --stop_stage 2 --test_sets "test_clean test_other"   # their features, then
#   ./run.sh --stage 8 --test_sets "test_clean test_other" --decode_config conf/decode_asr.yaml
set -euo pipefail
[ -x diffa.sh ] || { echo "$0: run it from its recipe directory: cd $(dirname "$0") && ./run.sh" >&2; exit 1; }

./diffa.sh \
  --semantic_train_sets train_asr \
  --acoustic_train_sets "train_qa_stage2 train_asr" \
  --sft_train_sets "train_qa_stage3 train_asr" \
  --vrpo_train_sets train_pref \
  --pairs_modes external \
  --dev_set dev_clean \
  --test_sets "mmsu mmau_test_mini mmar" \
  --n_mels 128 \
  --semantic_config conf/stage1_semantic.yaml \
  --acoustic_config conf/stage2_acoustic.yaml \
  --sft_config conf/stage3_sft.yaml \
  --vrpo_config conf/stage4_vrpo.yaml \
  --decode_config conf/decode_mcq.yaml \
  "$@"
