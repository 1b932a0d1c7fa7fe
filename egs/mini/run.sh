#!/usr/bin/env bash
# egs/mini: every stage of the DIFFA-2 recipe on a synthetic corpus with tiny models, on a CPU in
# minutes (the embedded default and the integration test). Options go to diffa.sh:
#   ./run.sh                          # stages 1-10
#   ./run.sh --stage 2 --stop_stage 2 # one stage; ./run.sh --help lists every option
set -euo pipefail
[ -x diffa.sh ] || { echo "$0: run it from its recipe directory: cd $(dirname "$0") && ./run.sh" >&2; exit 1; }
# Tiny models: one thread per process is as fast as two on an idle machine, and far faster than two
# when another process holds a core (OpenMP threads then wait on each other).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

./diffa.sh \
  --nj 2 \
  --local_data_opts "--nj 2 --seed 0" \
  --train_sets train \
  --acoustic_train_sets "train_qa train_asr" \
  --sft_train_sets "train_qa train_asr" \
  --dev_set dev \
  --test_sets test \
  --n_mels 80 \
  --semantic_config conf/stage1_semantic.yaml \
  --acoustic_config conf/stage2_acoustic.yaml \
  --sft_config conf/stage3_sft.yaml \
  --vrpo_config conf/stage4_vrpo.yaml \
  --decode_config conf/decode.yaml \
  --pairs_modes swap \
  --pairs_opts "--max_pairs 2000 --valid_data dump/dev --max_valid_pairs 300" \
  --score_opts "--group_by asks" \
  "$@"
