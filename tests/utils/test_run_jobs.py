"""utils/run_jobs.sh: parallel local jobs, one log per job, failures named, Slurm (fake) array and multi-node jobs."""
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

RUN_JOBS = Path(__file__).resolve().parents[2] / "utils" / "run_jobs.sh"
def run_jobs(*args, cwd, env=None):
    return subprocess.run(
        [str(RUN_JOBS), *map(str, args)], capture_output=True, text=True, cwd=cwd,
        env=dict(os.environ, **(env or {})), timeout=60,
    )


def test_jobs_run_in_parallel_with_a_log_each(tmp_path):
    # Each job waits (up to 20 s) until all three have started: only concurrent jobs finish.
    barrier = ("touch started.JOB; for i in $(seq 200); do "
               "[ $(ls started.* | wc -l) -ge 3 ] && exit 0; sleep 0.1; done; exit 1")
    result = run_jobs("--max_parallel", 3, "JOB=1:3", "log/wait.JOB.log", "bash", "-c", barrier,
                      cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for job in (1, 2, 3):
        lines = (tmp_path / "log" / f"wait.{job}.log").read_text().splitlines()
        assert lines[0].startswith(f"# 'bash' '-c' 'touch started.{job};")
        assert lines[1].startswith("# Started at ") and lines[1].endswith(f"(job {job})")
        assert lines[-1].startswith("# Ended (code 0) at ")


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_default_parallelism_ignores_omp_num_threads(tmp_path):
    # GNU nproc answers OMP_NUM_THREADS when it is set; recipes set it to 1 for their jobs, and the
    # runner took that for the number of CPUs, so their jobs ran one at a time.
    barrier = ("touch started.JOB; for i in $(seq 200); do "
               "[ $(ls started.* | wc -l) -ge 2 ] && exit 0; sleep 0.1; done; exit 1")
    result = run_jobs("JOB=1:2", "log/wait.JOB.log", "bash", "-c", barrier, cwd=tmp_path,
                      env={"OMP_NUM_THREADS": "1", "OMP_THREAD_LIMIT": "1"})
    assert result.returncode == 0, result.stderr


def _default_signals():
    """In the child: INT and HUP at their defaults. A shell started in the background (CI's `... &`,
    nohup) has them ignored, and bash cannot trap a signal ignored on entry."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def _wait_for_pids(pids):
    for _ in range(200):
        if all(p.exists() and p.read_text().strip() for p in pids):
            return
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_terminating_the_runner_stops_the_jobs_commands(tmp_path, sig):
    # Each job's command writes its pid, then would run for a minute.
    command = "echo $$ > pid.JOB; exec sleep 60"
    runner = subprocess.Popen([str(RUN_JOBS), "JOB=1:2", "log/s.JOB.log", "bash", "-c", command], cwd=tmp_path,
                              stderr=subprocess.PIPE, text=True, preexec_fn=_default_signals)
    pids = [tmp_path / f"pid.{job}" for job in (1, 2)]
    _wait_for_pids(pids)
    runner.send_signal(sig)
    assert runner.wait(timeout=10) == -sig  # dies of the signal itself, as its caller must see
    assert f"interrupted (SIG{sig.name[3:]}): stopped the running jobs" in runner.stderr.read()
    for p in pids:
        pid = int(p.read_text())
        for _ in range(100):  # the kill is asynchronous
            if not os.path.exists(f"/proc/{pid}") or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]:
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"job command {pid} outlived the runner")
    for job in (1, 2):  # the runner waited for the jobs, whose logs say how they ended
        assert (tmp_path / f"log/s.{job}.log").read_text().splitlines()[-1].startswith(
            "# Ended (killed by SIGTERM) at ")


@pytest.mark.parametrize("visible, per_job, groups", [("3,5,7", 1, {"3", "5", "7"}), ("0,1,2,3,4", 2, {"0,1", "2,3"})])
def test_local_jobs_get_gpus_of_their_own(tmp_path, visible, per_job, groups):
    # Jobs wait at a barrier until as many run as there are GPU groups; each holds its group
    # (mkdir fails if another running job has it) and says which it got.
    n = len(groups)
    job = (f'mkdir "held.$CUDA_VISIBLE_DEVICES" || touch clash.JOB; echo "$CUDA_VISIBLE_DEVICES" > got.JOB; '
           f'touch started.JOB; for i in $(seq 100); do [ $(ls started.* | wc -l) -ge {n} ] && break; sleep 0.1; done; '
           f'sleep 0.2; rmdir "held.$CUDA_VISIBLE_DEVICES"')
    result = run_jobs("--gpu", per_job, f"JOB=1:{2 * n}", "log/g.JOB.log", "bash", "-c", job, cwd=tmp_path,
                      env={"CUDA_VISIBLE_DEVICES": visible})
    assert result.returncode == 0, result.stderr
    got = [(tmp_path / f"got.{j}").read_text().strip() for j in range(1, 2 * n + 1)]
    assert set(got) == groups and not list(tmp_path.glob("clash.*"))
    assert (tmp_path / "log" / "g.1.log").read_text().splitlines()[1].endswith(f"(job 1) on GPUs {got[0]}")


def test_too_few_gpus_is_an_error(tmp_path):
    result = run_jobs("--gpu", 2, "JOB=1:2", "log/g.JOB.log", "true", cwd=tmp_path, env={"CUDA_VISIBLE_DEVICES": "0"})
    assert result.returncode == 1
    assert "--gpu 2: the jobs need 2 GPU(s) each, but 1 are visible (CUDA_VISIBLE_DEVICES='0'" in result.stderr


def test_ctrl_c_stops_the_calling_script_too(tmp_path):
    # Ctrl-C signals the whole foreground group. The runner used to exit with status 130, after which
    # bash ran the caller's next command (the stage engine's "|| die ... failed", the next stage).
    script = f'"{RUN_JOBS}" JOB=1:2 log/s.JOB.log bash -c "echo \\$\\$ > pid.JOB; exec sleep 60"; touch went_on'
    caller = subprocess.Popen(["bash", "-c", script], cwd=tmp_path, start_new_session=True, stderr=subprocess.DEVNULL,
                              preexec_fn=_default_signals)
    _wait_for_pids([tmp_path / f"pid.{job}" for job in (1, 2)])
    os.killpg(caller.pid, signal.SIGINT)
    caller.wait(timeout=10)
    assert not (tmp_path / "went_on").exists()


def test_max_parallel_is_respected(tmp_path):
    count = 'touch running.JOB; ls running.* | wc -l > seen.JOB; sleep 0.3; rm running.JOB'
    result = run_jobs("--max_parallel", 2, "JOB=1:5", "log/c.JOB.log", "bash", "-c", count, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    seen = [int((tmp_path / f"seen.{job}").read_text()) for job in range(1, 6)]
    assert max(seen) == 2  # two at a time, never more (each job sleeps long enough to meet another)


def test_failed_jobs_are_named(tmp_path):
    odd = "echo out JOB; [ $((JOB % 2)) = 1 ]"
    result = run_jobs("JOB=1:4", "exp/log/t.JOB.log", "bash", "-c", odd, cwd=tmp_path)
    assert result.returncode == 1
    assert "failed jobs: 2 4 (see exp/log/t.2.log exp/log/t.4.log)" in result.stderr
    assert "out 2" in result.stderr  # the tail of the first failed log
    assert (tmp_path / "exp/log/t.3.log").read_text().splitlines()[-1].startswith("# Ended (code 0)")
    assert (tmp_path / "exp/log/t.4.log").read_text().splitlines()[-1].startswith("# Ended (code 1)")


def test_other_job_variable_and_skip_if_exists(tmp_path):
    (tmp_path / "done.2").touch()
    result = run_jobs("--skip_if_exists", "done.N", "N=1:3", "log/x.N.log", "touch", "done.N", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "skipping job(s) 2" in result.stderr
    assert sorted(p.name for p in (tmp_path / "log").glob("*.log")) == ["x.1.log", "x.3.log"]


def test_single_job_substitutes_nothing(tmp_path):
    result = run_jobs("one.log", "echo", "JOB", "a b", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "one.log").read_text().splitlines()[2] == "JOB a b"


@pytest.mark.parametrize(
    "args, message",
    [
        (["JOB=1:2", "same.log", "true"], "must contain JOB"),
        (["JOB=3:2", "x.JOB.log", "true"], "empty job range"),
        (["JOB=1-2", "x.JOB.log", "true"], "bad job range"),
        (["--backend", "pbs", "x.log", "true"], "--backend must be local or slurm"),
        (["x.log"], "expected [JOB=A:B] <log> <command>"),
        (["--nope", "1", "x.log", "true"], "unknown option --nope"),
    ],
)
def test_bad_usage(tmp_path, args, message):
    result = run_jobs(*args, cwd=tmp_path)
    assert result.returncode == 1
    assert message in result.stderr


def test_slurm_backend_with_fake_sbatch(tmp_path, fake_slurm):
    (tmp_path / "out.1").touch()
    result = run_jobs(
        "--backend", "slurm", "--gpu", 1, "--max_parallel", 2, "--slurm_opts", "--partition=x --qos=y",
        "--skip_if_exists", "out.JOB", "JOB=1:4", "log/s.JOB.log",
        "bash", "-c", "touch out.JOB; [ JOB != 3 ]", cwd=tmp_path, env=fake_slurm.env,
    )
    assert result.returncode == 1
    assert "failed jobs: 3 (see log/s.3.log)" in result.stderr
    assert fake_slurm.calls("sbatch") == [
        "--wait --job-name s --array 2,3,4%2 --output log/q/s.%a.out --gres gpu:1 "
        "--partition=x --qos=y log/q/s.sh"
    ]
    assert fake_slurm.calls("srun") == []
    assert sorted(p.name for p in (tmp_path / "log").glob("*.log")) == ["s.2.log", "s.3.log", "s.4.log"]
    assert (tmp_path / "log/s.2.log").read_text().splitlines()[-1].startswith("# Ended (code 0)")


def test_multi_node_job_runs_once_per_node_through_srun(tmp_path, fake_slurm):
    node = 'echo "node $SLURM_NODEID of $SLURM_JOB_NODELIST in job $SLURM_JOB_ID"'
    result = run_jobs("--backend", "slurm", "--num_nodes", 3, "--gpu", 8, "--slurm_opts", "--partition=x",
                      "log/train.log", "bash", "-c", node, cwd=tmp_path, env=fake_slurm.env)
    assert result.returncode == 0, result.stderr
    # One job of 3 nodes, no array; its script starts one task per node.
    assert fake_slurm.calls("sbatch") == [
        "--wait --job-name train --nodes 3 --ntasks-per-node 1 --output log/q/train.1.out --gres gpu:8 "
        "--partition=x log/q/train.sh 1"
    ]
    assert fake_slurm.calls("srun") == [f"--nodes 3 --ntasks 3 --ntasks-per-node 1 --kill-on-bad-exit=1 bash -c {node}"]
    lines = (tmp_path / "log" / "train.log").read_text().splitlines()
    assert lines[0].startswith("# 'srun' '--nodes' '3' ") and lines[1].endswith("(job 1)")
    assert sorted(lines[2:5]) == [f"node {n} of node[1-3] in job 4321" for n in range(3)]
    assert lines[-1].startswith("# Ended (code 0)")


def test_multi_node_tasks_get_the_cpus_the_job_asked_for(tmp_path, fake_slurm):
    """srun of Slurm 22.05-23.02 ignores the job's SLURM_CPUS_PER_TASK and reads SRUN_CPUS_PER_TASK."""
    result = run_jobs("--backend", "slurm", "--num_nodes", 2, "--slurm_opts", "--cpus-per-task=12", "log/c.log",
                      "bash", "-c", 'echo "cpus ${SRUN_CPUS_PER_TASK:-unset}"', cwd=tmp_path, env=fake_slurm.env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "log" / "c.log").read_text().count("cpus 12") == 2
    # Without --cpus-per-task nothing is set, and a value the user exported wins.
    for env, expected in (({}, "unset"), ({"SRUN_CPUS_PER_TASK": "3"}, "3")):
        opts = ["--slurm_opts", "--cpus-per-task 5"] if env else []
        result = run_jobs("--backend", "slurm", "--num_nodes", 2, *opts, "log/c.log", "bash", "-c",
                          'echo "cpus ${SRUN_CPUS_PER_TASK:-unset}"', cwd=tmp_path, env={**fake_slurm.env, **env})
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "log" / "c.log").read_text().count(f"cpus {expected}") == 2


def test_a_failed_node_fails_the_multi_node_job(tmp_path, fake_slurm):
    result = run_jobs("--backend", "slurm", "--num_nodes", 2, "log/t.log", "bash", "-c", '[ "$SLURM_NODEID" = 0 ]',
                      cwd=tmp_path, env=fake_slurm.env)
    assert result.returncode == 1
    assert "failed jobs: 1 (see log/t.log)" in result.stderr


def test_one_node_is_the_default(tmp_path, fake_slurm):
    """--num_nodes 1 changes nothing: the same array job and the same job script."""
    scripts = []
    for options in ([], ["--num_nodes", 1]):
        result = run_jobs("--backend", "slurm", *options, "log/one.log", "true", cwd=tmp_path, env=fake_slurm.env)
        assert result.returncode == 0, result.stderr
        scripts.append((tmp_path / "log" / "q" / "one.sh").read_text())
    assert scripts[0] == scripts[1] and "srun" not in scripts[0]
    assert fake_slurm.calls("sbatch") == ["--wait --job-name one --array 1 --output log/q/one.%a.out log/q/one.sh"] * 2
    assert fake_slurm.calls("srun") == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["--num_nodes", "2", "x.log", "true"],
         "--num_nodes 2 needs --backend slurm (nothing starts the other nodes locally): set it in cmd.sh's "
         'train_cmd, e.g. train_cmd="utils/run_jobs.sh --backend slurm"'),
        (["--backend", "slurm", "--num_nodes", "2", "JOB=1:2", "x.JOB.log", "true"],
         "--num_nodes 2 runs one job on 2 nodes: drop the range JOB=1:2"),
        (["--num_nodes", "0", "x.log", "true"], "--num_nodes must be a positive integer, got '0'"),
    ],
)
def test_bad_multi_node_usage(tmp_path, fake_slurm, args, message):
    result = run_jobs(*args, cwd=tmp_path, env=fake_slurm.env)
    assert result.returncode == 1 and message in result.stderr
    assert fake_slurm.calls("sbatch") == []


def test_help():
    result = subprocess.run([str(RUN_JOBS), "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "Usage: utils/run_jobs.sh" in result.stdout and "--max_parallel" in result.stdout
