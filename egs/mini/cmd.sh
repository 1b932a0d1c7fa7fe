# shellcheck shell=bash
# How this recipe runs its jobs (sourced by diffa.sh; see utils/run_jobs.sh --help).
# egs/mini runs on one machine: every job is a local process.
train_cmd="utils/run_jobs.sh --backend local"
decode_cmd="utils/run_jobs.sh --backend local"
feats_cmd="utils/run_jobs.sh --backend local"
