#!/usr/bin/env bash
# Prepare this recipe's Kaldi data dirs (data/<set>/{wav.scp,text,utt2spk,spk2utt,utt2dur,tasks.jsonl})
# from LibriSpeech, the authors' JSON indices and the MMSU / MMAU / MMAR test sets.
#
# Usage: local/data.sh [--corpora_root DIR] [--datadir data] [--stage 1] [--stop_stage 4]
#                      [--librispeech_parts "train-clean-100 ..."] [--download_librispeech false]
#                      [--authors_json_dir DIR] [--mmsu_dir DIR] [--mmau_dir DIR] [--mmar_dir DIR] ...
#   Run from the recipe folder. local/data.sh --help lists every option (local/data.py does the
#   work); local/README.md says where each corpus comes from.
set -euo pipefail

exec "${PYTHON:-python3}" "$(dirname "$0")/data.py" "$@"
