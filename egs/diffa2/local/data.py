#!/usr/bin/env python3
"""Prepare DIFFA-2's data dirs from the downloaded corpora (local/data.sh runs this).

Usage:
    local/data.sh --corpora_root /corpora                     # corpora already unpacked there
    local/data.sh --corpora_root /corpora --download_librispeech true
    local/data.sh --corpora_root /corpora --stage 4           # only the benchmark test sets
    local/data.sh --mmsu_dir /x/MMSU --mmau_dir /x/MMAU --mmar_dir none --stage 4 --stop_stage 4
    local/data.sh --corpora_root /corpora --train_asr_json /d/stage1/data.json \\
        --train_qa_stage2_json /d/sft/merged_data.json --train_qa_stage3_json /d/stage3/merged_data.json \\
        --train_pref_json /d/vrpo/data.json                   # the authors' file of each stage (/d: DIFFA-data)

Writes Kaldi data dirs with tasks.jsonl (format: diffa/data/tasks.py):
    data/train_asr                    stage-1 ASR: LibriSpeech train-* (960 h), 25 instruction templates;
                                      or, when given, the authors' stage-1 index (train_asr.json) instead
    data/dev_clean data/dev_other     LibriSpeech validation sets
    data/test_clean data/test_other   LibriSpeech WER test sets
    data/train_qa_stage2              stage 2: the authors' stage-2 audio-QA index (train_qa_stage2.json)
    data/train_qa_stage3              stage 3: the authors' stage-3 audio-QA index (train_qa_stage3.json)
    data/train_qa                     the audio-QA index (train_qa.json) of stages 2 and 3 when they have
                                      none of their own: data/train_qa_stage2 and _stage3 are then links to it
    data/train_pref                   stage 4 (VRPO): the authors' preference index (train_pref.json)
    data/mmsu data/mmau_test_mini data/mmar   benchmark test sets
Index files default to <authors_json_dir>/<set>.json; only train_pref.json, and train_qa.json while a
stage falls back on it, must be there.

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
    recipe.IndexSet("train_asr", "asr", "the authors' stage-1 ASR index (their stage1/data.json), used "
                    "instead of LibriSpeech's train-* parts", optional=True),
    recipe.IndexSet("train_qa", "qa", "the authors' audio-QA index for stages 2 and 3 without their own",
                    optional=True),
    recipe.IndexSet("train_qa_stage2", "qa", "the authors' stage-2 audio-QA index (their sft/merged_data.json)",
                    fallback="train_qa"),
    recipe.IndexSet("train_qa_stage3", "qa", "the authors' stage-3 audio-QA index (their stage3/merged_data.json)",
                    fallback="train_qa"),
    recipe.IndexSet("train_pref", "pref", "the authors' preference index with 'rejected' answers (stage 4; "
                    "their vrpo/data.json)"),
)


if __name__ == "__main__":
    sys.exit(recipe.cli(__doc__, LIBRISPEECH_PARTS, INDEX_SETS))
