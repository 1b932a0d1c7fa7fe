#!/usr/bin/env python3
"""Prepare DIFFA (v1)'s data dirs from the downloaded corpora (local/data.sh runs this).

Usage:
    local/data.sh --corpora_root /corpora                     # corpora already unpacked there
    local/data.sh --corpora_root /corpora --download_librispeech true
    local/data.sh --corpora_root /corpora --stage 4           # only the benchmark test sets

Writes Kaldi data dirs with tasks.jsonl (format: diffa/data/tasks.py):
    data/train_asr                    stage 1 (semantic alignment): LibriSpeech train-* (960 h); or, when
                                      given, the authors' stage-1 index (train_asr.json) instead
    data/dev_clean data/dev_other     LibriSpeech validation sets
    data/test_clean data/test_other   LibriSpeech WER test sets (decode.sh decodes them)
    data/train_qa                     stage 2: the authors' synthetic instruction index
                                      (127 h from VCTK, AccentDB, IEMOCAP, DailyTalk, VoxCeleb1;
                                      <authors_json_dir>/train_qa.json)
    data/mmsu data/mmau_test_mini data/mmar   benchmark test sets

Stages: 1 download LibriSpeech (with --download_librispeech true), 2 LibriSpeech, 3 the authors'
index, 4 benchmarks. Where each corpus comes from: local/README.md.
"""
import sys

from diffa.data.corpora import recipe

LIBRISPEECH_PARTS = (
    "train-clean-100", "train-clean-360", "train-other-500",
    "dev-clean", "dev-other", "test-clean", "test-other",
)
INDEX_SETS = (
    recipe.IndexSet("train_asr", "asr", "the authors' stage-1 ASR index (their "
                    "data/librispeech_train_960/train.json), used instead of LibriSpeech's train-* parts",
                    optional=True),
    recipe.IndexSet("train_qa", "qa", "the authors' stage-2 instruction index (127 h synthetic QA; their "
                    "data/qwen3_ans/final_train.json)"),
)


if __name__ == "__main__":
    sys.exit(recipe.cli(__doc__, LIBRISPEECH_PARTS, INDEX_SETS))
