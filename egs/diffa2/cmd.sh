# shellcheck shell=bash
# How this recipe runs its jobs (sourced by diffa.sh; see utils/run_jobs.sh --help).
# On one machine, jobs are local processes:
train_cmd="utils/run_jobs.sh --backend local"
decode_cmd="utils/run_jobs.sh --backend local"
feats_cmd="utils/run_jobs.sh --backend local --max_parallel 16"

# On a Slurm cluster, submit them with sbatch (one array job per call). sbatch takes its defaults
# from SBATCH_* variables, e.g.:
#   export SBATCH_PARTITION=gpu SBATCH_TIMELIMIT=5-00:00:00 SBATCH_MEM_PER_NODE=400G
# train_cmd="utils/run_jobs.sh --backend slurm --slurm_opts --cpus-per-task=32"
# decode_cmd="utils/run_jobs.sh --backend slurm --max_parallel 64"
# feats_cmd="utils/run_jobs.sh --backend slurm --slurm_opts --partition=cpu"
# With train_cmd on Slurm, training can span nodes: `./run.sh --stage 5 --ngpu 8 --num_nodes 8`
# submits one job of 8 nodes (--gres gpu:8 each) that runs one torchrun per node through srun;
# they meet at --master_port (29500) on the job's first node.
