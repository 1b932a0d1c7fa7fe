#!/usr/bin/env python3
"""Prepare DIFFA-2's data dirs from the downloaded corpora (local/data.sh runs this).

Usage:
    local/data.sh --corpora_root /corpora                     # corpora already unpacked there
    local/data.sh --corpora_root /corpora --download_librispeech true
    local/data.sh --corpora_root /corpora --stage 4           # only the benchmark test sets
    local/data.sh --mmsu_dir /x/MMSU --mmau_dir /x/MMAU --mmar_dir none --stage 4 --stop_stage 4

Writes Kaldi data dirs with tasks.jsonl (format: diffa/data/tasks.py):
    data/train_asr                    stage-1 ASR: LibriSpeech train-* (960 h), 25 instruction templates
    data/dev_clean data/dev_other     LibriSpeech validation sets
    data/test_clean data/test_other   LibriSpeech WER test sets
    data/train_qa                     stages 2-3: the authors' audio-QA index (<authors_json_dir>/train_qa.json)
    data/train_pref                   stage 4 (VRPO): the authors' preference index (train_pref.json)
    data/mmsu data/mmau_test_mini data/mmar   benchmark test sets

Stages: 1 download LibriSpeech (with --download_librispeech true), 2 LibriSpeech, 3 the authors'
indices, 4 benchmarks. Where each corpus comes from: local/README.md.
"""
import sys

from diffa.data.corpora import recipe

LIBRISPEECH_PARTS = (
    "train-clean-100", "train-clean-360", "train-other-500",
    "dev-clean", "dev-other", "test-clean", "test-other",
)
INDEX_SETS = (
    recipe.IndexSet("train_qa", "qa", "the authors' audio-QA training index (stages 2-3)"),
    recipe.IndexSet("train_pref", "pref", "the authors' preference index with 'rejected' answers (stage 4)"),
)


if __name__ == "__main__":
    sys.exit(recipe.cli(__doc__, LIBRISPEECH_PARTS, INDEX_SETS))
