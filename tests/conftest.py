"""Test-wide settings (no hub access, deterministic small thread count) and the fake Slurm."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


# Fake Slurm commands (see the fake_slurm fixture). Each appends its arguments to
# $FAKE_SLURM/<command>.calls, then does what Slurm would do on a cluster of one machine.
FAKE_SBATCH = r"""#!/usr/bin/env bash
# sbatch --wait: each array task once, or a --nodes job once (its batch step, on the first node).
echo "$*" >>"$FAKE_SLURM/sbatch.calls"
array="" nodes=1
while [ $# -gt 0 ]; do
  case "$1" in
    --array) array=${2%%\%*}; shift 2 ;;
    --nodes) nodes=$2; shift 2 ;;
    --cpus-per-task) export SLURM_CPUS_PER_TASK=$2; shift 2 ;;
    --cpus-per-task=*) export SLURM_CPUS_PER_TASK=${1#*=}; shift ;;
    --job-name | --output | --gres | --ntasks-per-node) shift 2 ;;
    --*) shift ;;
    *) break ;;
  esac
done
export SLURM_JOB_ID=4321 SLURM_JOB_NUM_NODES=$nodes SLURM_JOB_NODELIST=${FAKE_SLURM_NODELIST:-node[1-$nodes]}
[ -n "$array" ] || exec bash "$@"
rc=0
for task in ${array//,/ }; do
  SLURM_ARRAY_TASK_ID=$task bash "$@" || rc=1
done
exit $rc
"""
FAKE_SRUN = r"""#!/usr/bin/env bash
# srun inside a job: the command once per node (--nodes), all at once; fails if any task fails.
echo "$*" >>"$FAKE_SLURM/srun.calls"
nodes=${SLURM_JOB_NUM_NODES:?srun outside a job}
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) nodes=$2; shift 2 ;;
    --ntasks | --ntasks-per-node) shift 2 ;;
    --*) shift ;;
    *) break ;;
  esac
done
pids=()
for ((node = 0; node < nodes; node++)); do
  SLURM_NODEID=$node SLURM_PROCID=$node "$@" &
  pids+=($!)
done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
exit $rc
"""
FAKE_SCONTROL = r"""#!/usr/bin/env bash
# scontrol show hostnames LIST: LIST expanded, one host a line (prefix[A-B] or a,b,...).
echo "$*" >>"$FAKE_SLURM/scontrol.calls"
[ "$1 $2" = "show hostnames" ] || exit 1
if [[ $3 =~ ^(.*)\[([0-9]+)-([0-9]+)\]$ ]]; then
  for ((i = BASH_REMATCH[2]; i <= BASH_REMATCH[3]; i++)); do echo "${BASH_REMATCH[1]}$i"; done
else
  tr , '\n' <<<"$3"
fi
"""


class FakeSlurm:
    """``env``: PATH with the fake commands first and FAKE_SLURM; ``calls(command)``: their argument lines."""

    def __init__(self, bin_dir):
        self.bin_dir = bin_dir
        self.env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_SLURM": str(bin_dir)}

    def calls(self, command):
        path = self.bin_dir / f"{command}.calls"
        return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def fake_slurm(tmp_path):
    """sbatch, srun and scontrol that run jobs on this machine as Slurm would run them on a cluster.

    sbatch --wait runs each array task, or runs a ``--nodes N`` job's script once with the
    allocation's variables (SLURM_JOB_ID=4321, SLURM_JOB_NUM_NODES, SLURM_JOB_NODELIST: node[1-N],
    or $FAKE_SLURM_NODELIST; SLURM_CPUS_PER_TASK when asked for); srun then starts its command once per node, in parallel, with
    SLURM_NODEID and SLURM_PROCID set; scontrol expands the node list.
    """
    bin_dir = tmp_path / "fake_slurm"
    bin_dir.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return FakeSlurm(bin_dir)
