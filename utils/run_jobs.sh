#!/usr/bin/env bash
# Run a command as numbered jobs, locally or through Slurm, with one log file per job.
#
# Usage: utils/run_jobs.sh [options] [JOB=A:B] <log> <command> [<arg>...]
#   JOB=A:B  run jobs A..B. The variable name (JOB here; any name made of letters, digits and _)
#            is replaced by the job number in <log>, in every argument and in --skip_if_exists.
#            Without a range the command runs once as job 1 and nothing is replaced.
#   <log>    the job's log file (directories are made): the command line, host, start time, the
#            command's stdout and stderr, and a last line "# Ended (code N) at ... after Ss"
#            ("# Ended (killed by SIGTERM) ..." for a job stopped by a signal).
# The command runs as an argument list, not through a shell: to use pipes, run `bash -c '...'`.
# Exits 0 when every job succeeded, 1 after naming the failed jobs and their logs.
#
# Backends (a recipe's cmd.sh chooses one, e.g. feats_cmd="utils/run_jobs.sh --backend local"):
#   local  background processes on this machine, at most --max_parallel at once. With --gpu N,
#          the visible GPUs (CUDA_VISIBLE_DEVICES, else every GPU nvidia-smi lists) are dealt out
#          N to a job: a job runs with CUDA_VISIBLE_DEVICES set to its own, and at most as many
#          jobs run at once as there are such groups (fewer with --max_parallel).
#   slurm  one `sbatch --wait --array=...` call; job N runs as array task N, in this directory,
#          with this environment (sbatch's default --export=ALL). Slurm's own messages go to
#          <log dir>/q/<name>.<task>.out.
#          With --num_nodes N > 1 (one job, no JOB range): `sbatch --wait --nodes N
#          --ntasks-per-node 1`, and the job starts the command on every node with srun, one task
#          per node (e.g. one torchrun each; SLURM_NODEID tells them apart); the log collects
#          every node's output.
#
# Example: utils/run_jobs.sh --max_parallel 4 JOB=1:8 exp/log/decode.JOB.log \
#            python -m diffa.bin.decode --data_dir data/test/split8/JOB ...

backend=local       # local or slurm
max_parallel=0      # most jobs at once (0: nproc for local, GPU groups with --gpu; no limit for slurm)
gpu=0               # GPUs per job (slurm: --gres=gpu:N, per node; local: dealt out, see above)
num_nodes=1         # nodes of the job (> 1: slurm only, one job run once per node through srun)
slurm_opts=""       # extra sbatch options, e.g. "--partition=gpu --time=24:00:00"
skip_if_exists=""   # skip a job whose file exists (JOB is replaced), e.g. out/.done.JOB
help_message=$(sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0")

. "$(dirname "$0")/parse_options.sh"

set -uo pipefail
me=${0##*/}

die() {
  echo "$me: $*" >&2
  exit 1
}

[ $# -ge 2 ] || die "expected [JOB=A:B] <log> <command> [<arg>...], got '$*' (see --help)"
case "$backend" in local | slurm) ;; *) die "--backend must be local or slurm, got '$backend'" ;; esac
[[ $max_parallel =~ ^[0-9]+$ ]] || die "--max_parallel must be a non-negative integer, got '$max_parallel'"
[[ $gpu =~ ^[0-9]+$ ]] || die "--gpu must be a non-negative integer, got '$gpu'"
[[ $num_nodes =~ ^[1-9][0-9]*$ ]] || die "--num_nodes must be a positive integer, got '$num_nodes'"
[ "$num_nodes" -eq 1 ] || [ "$backend" = slurm ] ||
  die "--num_nodes $num_nodes needs --backend slurm (nothing starts the other nodes locally):" \
    "set it in cmd.sh's train_cmd, e.g. train_cmd=\"utils/run_jobs.sh --backend slurm\""

jobvar=""
first=1
last=1
if [[ $1 =~ ^([A-Za-z_][A-Za-z0-9_]*)=([0-9]+):([0-9]+)$ ]]; then
  jobvar=${BASH_REMATCH[1]}
  first=$((10#${BASH_REMATCH[2]}))
  last=$((10#${BASH_REMATCH[3]}))
  shift
  [ "$first" -le "$last" ] || die "empty job range $jobvar=$first:$last"
elif [[ $1 =~ ^[A-Za-z_][A-Za-z0-9_]*= ]]; then
  die "bad job range '$1' (expected e.g. JOB=1:4)"
fi
[ $# -ge 2 ] || die "expected <log> <command> after the job range (see --help)"
log=$1
shift
if [ -n "$jobvar" ] && [[ $log != *"$jobvar"* ]]; then
  die "the log name '$log' must contain $jobvar so that each job gets its own log"
fi
if [ "$num_nodes" -gt 1 ]; then
  # A multi-node job is one job: an array would give each task nodes of its own.
  [ -z "$jobvar" ] ||
    die "--num_nodes $num_nodes runs one job on $num_nodes nodes: drop the range $jobvar=$first:$last"
  # One task on every node of the allocation. A task that fails ends the others, which would
  # otherwise wait for it (e.g. at torchrun's rendezvous) until the job's time limit.
  set -- srun --nodes "$num_nodes" --ntasks "$num_nodes" --ntasks-per-node 1 --kill-on-bad-exit=1 "$@"
fi

# Job number -> its log path (or another path with the job variable in it).
for_job() {
  if [ -n "$jobvar" ]; then echo "${1//$jobvar/$2}"; else echo "$1"; fi
}

# One script runs any job: its number comes from $1 (local) or SLURM_ARRAY_TASK_ID (slurm).
name=$(basename "$log" .log)
[ -z "$jobvar" ] || name=${name//.$jobvar/}
qdir=$(dirname "$log")/q
mkdir -p "$qdir" || die "cannot create $qdir"
script=$qdir/$name.sh
{
  echo '#!/usr/bin/env bash'
  echo "# Written by utils/run_jobs.sh; job number in \$1 or \$SLURM_ARRAY_TASK_ID."
  echo "cd $(printf '%q' "$PWD") || exit 1"
  echo 'job=${1:-${SLURM_ARRAY_TASK_ID:?no job number}}'
  printf 'log=%q\n' "$log"
  printf 'args=('
  printf ' %q' "$@"
  printf ' )\n'
  if [ "$num_nodes" -gt 1 ]; then
    # srun of Slurm 22.05-23.02 gives its tasks one CPU each whatever the job's --cpus-per-task
    # (it no longer reads SLURM_CPUS_PER_TASK, only SRUN_CPUS_PER_TASK): pass the job's value on.
    echo '[ -z "${SLURM_CPUS_PER_TASK:-}" ] || export SRUN_CPUS_PER_TASK=${SRUN_CPUS_PER_TASK:-$SLURM_CPUS_PER_TASK}'
  fi
  if [ -n "$jobvar" ]; then
    echo "log=\${log//$jobvar/\$job}"
    echo "args=(\"\${args[@]//$jobvar/\$job}\")"
  fi
  if [ "$backend" = local ] && [ "$gpu" -gt 0 ]; then
    # The runner starts no more jobs than GPU groups, so a free group is always there to take
    # (mkdir is atomic); a group is given back when the job's script exits.
    printf 'locks=%q\n' "$qdir/$name.gpus"
    cat <<'EOF'
for group in $GPU_GROUPS; do
  if mkdir "$locks/$group" 2>/dev/null; then
    export CUDA_VISIBLE_DEVICES=$group
    trap 'rmdir "$locks/$CUDA_VISIBLE_DEVICES"' EXIT
    break
  fi
done
[ -n "${CUDA_VISIBLE_DEVICES:-}" ] || { echo "job $job: no free GPU group of: $GPU_GROUPS" >"$log"; exit 1; }
EOF
  fi
  cat <<'EOF'
mkdir -p "$(dirname "$log")" || exit 1
{
  echo "# ${args[*]@Q}"
  echo "# Started at $(date '+%Y-%m-%dT%H:%M:%S') on ${HOSTNAME:-$(uname -n)} (job $job)${GPU_GROUPS:+ on GPUs $CUDA_VISIBLE_DEVICES}"
} >"$log"
ended() { echo "# Ended ($1) at $(date '+%Y-%m-%dT%H:%M:%S') after ${SECONDS}s" >>"$log"; }
# A stopped job says so in its log too (bash runs the trap once the command has died of it).
trap 'ended "killed by SIGTERM"; exit 143' TERM
trap 'ended "killed by SIGINT"; exit 130' INT
trap 'ended "killed by SIGHUP"; exit 129' HUP
"${args[@]}" >>"$log" 2>&1
rc=$?
ended "code $rc"
exit $rc
EOF
} >"$script.tmp" && mv "$script.tmp" "$script" || die "cannot write $script"

todo=()
skipped=()
for ((j = first; j <= last; j++)); do
  if [ -n "$skip_if_exists" ] && [ -e "$(for_job "$skip_if_exists" "$j")" ]; then
    skipped+=("$j")
  else
    rm -f "$(for_job "$log" "$j")"
    todo+=("$j")
  fi
done
[ ${#skipped[@]} -eq 0 ] ||
  echo "$me: skipping job(s) ${skipped[*]}: $(for_job "$skip_if_exists" "${skipped[0]}") ... exist" >&2
[ ${#todo[@]} -gt 0 ] || exit 0

case "$backend" in
  local)
    # The usable CPUs, whatever OMP_NUM_THREADS says: GNU nproc reports OMP_NUM_THREADS when it
    # is set, and recipes set it to 1 for their single-threaded jobs (egs/mini does), which made
    # every local job of theirs wait for the one before.
    if [ "$gpu" -eq 0 ]; then
      [ "$max_parallel" -gt 0 ] || max_parallel=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
    else
      if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
        IFS=, read -r -a gpus <<<"$CUDA_VISIBLE_DEVICES"
      else
        mapfile -t gpus < <(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null)
      fi
      groups=$((${#gpus[@]} / gpu))
      [ "$groups" -gt 0 ] || die "--gpu $gpu: the jobs need $gpu GPU(s) each, but ${#gpus[@]} are visible" \
        "(CUDA_VISIBLE_DEVICES='${CUDA_VISIBLE_DEVICES:-}'; otherwise nvidia-smi's list)"
      GPU_GROUPS=""
      for ((g = 0; g < groups; g++)); do
        GPU_GROUPS+="${GPU_GROUPS:+ }$(IFS=,; echo "${gpus[*]:g * gpu:gpu}")"
      done
      export GPU_GROUPS
      [ "$max_parallel" -gt 0 ] && [ "$max_parallel" -le "$groups" ] || max_parallel=$groups
      rm -rf "$qdir/$name.gpus" && mkdir -p "$qdir/$name.gpus" || die "cannot create $qdir/$name.gpus"
    fi
    # Each job runs in a process group of its own (setsid), so that an interrupted run stops the
    # jobs' commands too, not only their wrapper shells: an orphan would still be writing its
    # outputs while a rerun writes them again.
    group=$(command -v setsid || true)
    # Then the runner dies of the same signal, so that the script that called it stops too (bash
    # carries on after a child that exits with a status, even 130, but not after one killed by
    # SIGINT) and no job outlives a closed terminal (HUP).
    stop() {
      local pid
      for pid in $(jobs -p); do
        if [ -n "$group" ]; then kill -- "-$pid" 2>/dev/null; else kill "$pid" 2>/dev/null; fi
      done
      trap - "$1"
      # For their logs' last line (a second signal cuts this short). Without setsid only the jobs'
      # shells got the signal, and they wait for their commands: no waiting then.
      [ -z "$group" ] || wait
      echo "$me: interrupted (SIG$1): stopped the running jobs; a rerun resumes" >&2
      kill -s "$1" $$
    }
    trap 'stop INT' INT
    trap 'stop TERM' TERM
    trap 'stop HUP' HUP
    for j in "${todo[@]}"; do
      while [ "$(jobs -rp | wc -l)" -ge "$max_parallel" ]; do
        wait -n
      done
      $group bash "$script" "$j" &
    done
    wait
    ;;
  slurm)
    if [ "$num_nodes" -gt 1 ]; then
      # The script runs on the first node and takes the job number as its argument.
      sbatch_args=(--wait --job-name "$name" --nodes "$num_nodes" --ntasks-per-node 1
        --output "$qdir/$name.1.out")
      script_args=(1)
    else
      array=$(IFS=,; echo "${todo[*]}")
      [ "$max_parallel" -eq 0 ] || array+="%$max_parallel"
      sbatch_args=(--wait --job-name "$name" --array "$array" --output "$qdir/$name.%a.out")
      script_args=()
    fi
    [ "$gpu" -eq 0 ] || sbatch_args+=(--gres "gpu:$gpu")
    read -r -a extra <<<"$slurm_opts"
    sbatch "${sbatch_args[@]}" "${extra[@]}" "$script" "${script_args[@]}" >/dev/null ||
      echo "$me: sbatch exited with code $? (Slurm's messages: $qdir/$name.*.out)" >&2
    ;;
esac

failed=()
for j in "${todo[@]}"; do
  [[ $(tail -n 1 "$(for_job "$log" "$j")" 2>/dev/null) == "# Ended (code 0) "* ]] || failed+=("$j")
done
[ ${#failed[@]} -eq 0 ] && exit 0

logs=()
for j in "${failed[@]}"; do logs+=("$(for_job "$log" "$j")"); done
echo "$me: failed jobs: ${failed[*]} (see ${logs[*]})" >&2
if [ -f "${logs[0]}" ]; then
  echo "$me: last lines of ${logs[0]}:" >&2
  tail -n 5 "${logs[0]}" | sed 's/^/  /' >&2
else
  echo "$me: ${logs[0]} was never written: the job did not start" >&2
fi
exit 1
