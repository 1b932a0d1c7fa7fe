"""What the egs/mini pre-training scripts share: seeding, the learning-rate schedule, clip facts,
publishing an output directory atomically and the command-line error exit.

The tiny "pretrained" Whisper encoder and LLaDA of egs/mini are trained by
``local/pretrain_whisper.py`` and ``local/pretrain_llada.py`` (called by
``local/prepare_models.sh``); both are small deterministic loops built from these helpers.
"""
import contextlib
import logging
import math
import os
import shutil
import sys
import tempfile

import torch

from diffa.data.tasks import read_tasks

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_run(seed, threads):
    """Log to stderr, seed torch and fix the number of CPU threads (results depend on it).

    Arguments
    ---------
    seed : int
        Seed of torch's global generator.
    threads : int
        Intra-op threads (1 or 2 keep a run reproducible on a shared machine).

    Example
    -------
    >>> setup_run(0, 1)
    >>> torch.get_num_threads()
    1
    """
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    if threads < 1:
        raise ValueError(f"--threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)
    torch.manual_seed(seed)


def learning_rate(step, total, peak, warmup):
    """Linear warm-up to ``peak`` over ``warmup`` steps, then cosine decay to zero at ``total``.

    Arguments
    ---------
    step : int
        The step about to be taken, from 0.
    total : int
        Number of steps of the run.
    peak : float
        Largest learning rate.
    warmup : int
        Warm-up steps.

    Returns
    -------
    float

    Example
    -------
    >>> [round(learning_rate(s, 10, 1.0, 2), 3) for s in (0, 1, 2, 6, 9)]
    [0.5, 1.0, 1.0, 0.5, 0.038]
    """
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def clip_properties(tasks_path):
    """The facts of every clip that multiple-choice rows ask about, and each property's values.

    A property is whatever a multiple-choice row's ``labels["asks"]`` names (gender, rate, beeps,
    ...); its values are the answers those rows give, sorted.

    Arguments
    ---------
    tasks_path : str
        A ``tasks.jsonl`` of the mini corpus.

    Returns
    -------
    facts : dict of str to dict
        utt -> {property: value} for the properties the clip has.
    values : dict of str to list of str
        property -> its sorted values.

    Example
    -------
    >>> import os, tempfile
    >>> from diffa.data.tasks import write_tasks
    >>> path = os.path.join(tempfile.mkdtemp(), "tasks.jsonl")
    >>> row = {"task": "mcq", "instruction": "Gender? (A) male (B) female", "choices": ["male", "female"]}
    >>> write_tasks(path, [
    ...     {**row, "id": "a-mcq", "utt": "a", "answer": "male", "gold": 0,
    ...      "labels": {"gender": "male", "asks": "gender"}},
    ...     {**row, "id": "b-mcq", "utt": "b", "answer": "female", "gold": 1,
    ...      "labels": {"gender": "female", "asks": "gender"}}])
    >>> clip_properties(path)
    ({'a': {'gender': 'male'}, 'b': {'gender': 'female'}}, {'gender': ['female', 'male']})
    """
    rows = read_tasks(tasks_path)
    asked = {row["labels"]["asks"] for row in rows if row["task"] == "mcq" and "asks" in row.get("labels", {})}
    if not asked:
        raise ValueError(f"{tasks_path}: no multiple-choice row has labels['asks']; is this the mini corpus?")
    facts, values = {}, {prop: set() for prop in asked}
    for row in rows:
        labels = row.get("labels", {})
        clip = facts.setdefault(row["utt"], {})
        for prop in sorted(asked & set(labels)):
            clip[prop] = labels[prop]
            values[prop].add(labels[prop])
    return facts, {prop: sorted(vals) for prop, vals in sorted(values.items())}


@contextlib.contextmanager
def publish_dir(out_dir):
    """Yield a fresh temporary directory beside ``out_dir``; on success it replaces ``out_dir``.

    An interrupted run leaves ``out_dir`` as it was (and a ``.<name>.*`` temporary that the next
    run ignores), never a half-written directory.

    Arguments
    ---------
    out_dir : str
        The directory to (re)create.

    Example
    -------
    >>> root = tempfile.mkdtemp()
    >>> with publish_dir(os.path.join(root, "model")) as tmp:
    ...     _ = open(os.path.join(tmp, "x"), "w").write("1")
    >>> os.listdir(os.path.join(root, "model"))
    ['x']
    """
    out_dir = os.path.abspath(out_dir)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.", dir=parent)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if os.path.exists(out_dir):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.old.", dir=parent)
        os.rename(out_dir, os.path.join(old, "dir"))
    os.rename(tmp, out_dir)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def publish_model(model, out_dir, lines):
    """Print the report ``lines`` and publish ``out_dir`` (:func:`publish_dir`): the model's
    ``save_pretrained`` files and ``pretrain_log.txt`` (the command line, then ``lines``).

    Example
    -------
    >>> class Model:
    ...     def save_pretrained(self, path):
    ...         open(os.path.join(path, "config.json"), "w").write("{}")
    >>> out = os.path.join(tempfile.mkdtemp(), "model")
    >>> publish_model(Model(), out, ["dev wer: 12.5"])
    dev wer: 12.5
    >>> sorted(os.listdir(out)), open(os.path.join(out, "pretrain_log.txt")).read().splitlines()[1]
    (['config.json', 'pretrain_log.txt'], 'dev wer: 12.5')
    """
    print("\n".join(lines))
    with publish_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        with open(os.path.join(tmp, "pretrain_log.txt"), "w", encoding="utf-8") as f:
            f.write(" ".join(sys.argv) + "\n" + "\n".join(lines) + "\n")


def run_script(main, name):
    """Call ``main()``; a ValueError or FileNotFoundError exits with ``<name>: error: <message>``.

    Example
    -------
    >>> def main():
    ...     raise ValueError("no rows in data/train/tasks.jsonl")
    >>> run_script(main, "local/x.py")
    Traceback (most recent call last):
    ...
    SystemExit: local/x.py: error: no rows in data/train/tasks.jsonl
    """
    try:
        main()
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"{name}: error: {err}")
