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
# With train_cmd on Slurm, training can span nodes: `./run.sh --stage 3 --ngpu 8 --num_nodes 2`
# submits one job of 2 nodes (--gres gpu:8 each) that runs one torchrun per node through srun;
# they meet at --master_port (29500) on the job's first node.
