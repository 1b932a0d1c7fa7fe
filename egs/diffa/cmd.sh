# shellcheck shell=bash
# How this recipe runs its jobs (sourced by diffa.sh; see utils/run_jobs.sh --help).
# On one machine, jobs are local processes:
train_cmd="utils/run_jobs.sh --backend local"
decode_cmd="utils/run_jobs.sh --backend local"
feats_cmd="utils/run_jobs.sh --backend local"

# On a Slurm cluster, submit them with sbatch instead; sbatch reads its defaults from SBATCH_*
# variables (export SBATCH_PARTITION=gpu SBATCH_TIMELIMIT=3-00:00:00), and --slurm_opts takes
# more options without spaces inside them:
# train_cmd="utils/run_jobs.sh --backend slurm --slurm_opts --cpus-per-task=16"
# decode_cmd="utils/run_jobs.sh --backend slurm --max_parallel 32"
# feats_cmd="utils/run_jobs.sh --backend slurm"
