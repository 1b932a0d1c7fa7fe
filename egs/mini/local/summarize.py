"""Summarise an egs/mini run: RESULTS.md and exp/results.json, printed at the end of run.sh.

Usage:
  python local/summarize.py --scores exp/stage4_vrpo/decode_decode/test/score/scores.json \\
      --vrpo_log exp/stage4_vrpo/train_log.txt --wall_seconds 512 \\
      --sft_logs exp/stage2_acoustic/train_log.txt exp/stage3_sft/train_log.txt \\
      --results_md RESULTS.md --results_json exp/results.json

Reads the test set's ``scores.json`` (``diffa.bin.score``: ASR WER, MCQ accuracy per question
type, open-question accuracy) and the last ``vrpo_valid`` line of the VRPO stage's train log
(held-out preference accuracy of the policy, and of the frozen reference = the stage-3 SFT model;
left empty when the decoded model is not a VRPO one) and the dev loss over SFT, per task type
(``--sft_logs``: the last ``valid`` line of the stage SFT starts from, i.e. the same model scored on
the same masks and batches, and that of SFT), then writes both files atomically. The
machine-readable keys are ``asr_wer``, ``mcq_accuracy``, ``open_qa_accuracy`` (percent),
``pref_accuracy_sft``, ``pref_accuracy_vrpo`` (percent), ``mcq_by_question``, ``sft_dev_loss``
(``{"loss": [start, end], "loss_asr": [start, end], ...}``) and ``wall_seconds``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Dict, List, Optional, Sequence

import yaml


def last_log_line(path: str, kind: str) -> Dict[str, str]:
    """``key=value`` fields of the last line of ``path`` that starts with ``kind`` (empty if none).

    Example
    -------
    >>> import tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "log")
    >>> _ = open(p, "w").write("vrpo_valid step=1 policy_accuracy=0.5\\nvrpo_valid step=9 policy_accuracy=0.75\\n")
    >>> last_log_line(p, "vrpo_valid")["policy_accuracy"]
    '0.75'
    """
    fields: Dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            words = line.split()
            if words and words[0] == kind:
                fields = dict(w.split("=", 1) for w in words[1:] if "=" in w)
    return fields


# The settings of a training config that decide what its validation loss is (the dev set, its
# batches and masks, the numerics); "batching" without its "shuffle".
VALIDATION_KEYS = ("valid_data", "tokenizer_dir", "system_prompt", "max_answer_tokens", "seed", "t_eps",
                   "batching", "loss_normalization", "precision", "frozen_dtype")


def validation_differences(start_config: dict, end_config: dict, start_dir: str) -> List[str]:
    """Why the last validation of ``start_config``'s stage is not where ``end_config``'s starts:
    its model is not the one the other starts from, or they validate differently (empty: it is).

    Example
    -------
    >>> a = {"seed": 1, "batching": {"max_batch_size": 32, "shuffle": True}, "output_folder": "exp/s2"}
    >>> validation_differences(a, {**a, "batching": {"max_batch_size": 32}, "init_from": "exp/s2"}, "exp/s2")
    []
    >>> validation_differences(a, {**a, "seed": 2, "init_from": "exp/s1"}, "exp/s2")
    ['init_from exp/s1 is not exp/s2', 'seed 1 != 2']
    """
    problems = []
    init = os.path.normpath(str(end_config.get("init_from") or ""))
    if init not in (os.path.normpath(start_dir), os.path.join(os.path.normpath(start_dir), "final")):
        problems.append(f"init_from {end_config.get('init_from')} is not {start_dir}")
    for key in VALIDATION_KEYS:
        a, b = start_config.get(key), end_config.get(key)
        if key == "batching":
            a, b = ({k: v for k, v in (x or {}).items() if k != "shuffle"} for x in (a, b))
        if a != b:
            problems.append(f"{key} {a} != {b}")
    return problems


def sft_dev_loss(start_log: str, end_log: str) -> Dict[str, list]:
    """``{"loss": [start, end], "loss_<task>": [start, end], ...}`` from the last ``valid`` lines of
    the two logs (the keys both have). Empty when a log is missing, or when the two stages'
    ``config.yaml`` (beside the logs) show that the first's last validation is not SFT's start
    (:func:`validation_differences`, named on stderr).

    Example
    -------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> for stage, line in (("s2", "step=300 loss=0.58 loss_asr=1.9 loss_mcq=0.2"), ("s3", "step=400 loss=0.48 loss_asr=1.8 loss_mcq=0.1")):
    ...     os.makedirs(f"{d}/{stage}")
    ...     _ = open(f"{d}/{stage}/train_log.txt", "w").write(f"valid epoch=1 {line}\\n")
    ...     _ = open(f"{d}/{stage}/config.yaml", "w").write(f"seed: 1\\ninit_from: {d}/s2\\n")
    >>> sft_dev_loss(f"{d}/s2/train_log.txt", f"{d}/s3/train_log.txt")
    {'loss': [0.58, 0.48], 'loss_asr': [1.9, 1.8], 'loss_mcq': [0.2, 0.1]}
    """
    if not (os.path.exists(start_log) and os.path.exists(end_log)):
        return {}
    start_dir, configs = os.path.dirname(start_log), []
    for log in (start_log, end_log):
        with open(os.path.join(os.path.dirname(log), "config.yaml"), encoding="utf-8") as f:
            configs.append(yaml.safe_load(f))
    problems = validation_differences(*configs, start_dir)
    if problems:
        print(f"summarize.py: no dev loss over SFT: {start_log}'s last validation is not where SFT starts "
              f"({'; '.join(problems)})", file=sys.stderr)
        return {}
    start, end = last_log_line(start_log, "valid"), last_log_line(end_log, "valid")
    return {key: [float(start[key]), float(end[key])] for key in end if key.startswith("loss") and key in start}


def summarize(scores_path: str, vrpo_log: str, wall_seconds: float, sft_logs: Sequence[str] = ()) -> dict:
    """The numbers of the run (see module docstring)."""
    with open(scores_path, encoding="utf-8") as f:
        scores = json.load(f)
    metrics = scores["metrics"]
    asks = scores.get("mcq", {}).get("tables", {}).get("asks", {})
    vrpo = last_log_line(vrpo_log, "vrpo_valid") if os.path.exists(vrpo_log) else {}
    pref = lambda key: 100 * float(vrpo[key]) if key in vrpo else None  # noqa: E731
    return {
        "asr_wer": metrics.get("asr_wer"),
        "mcq_accuracy": metrics.get("mcq_accuracy"),
        "open_qa_accuracy": metrics.get("open_qa_accuracy"),
        "pref_accuracy_sft": pref("reference_accuracy"),
        "pref_accuracy_vrpo": pref("policy_accuracy"),
        "pref_pairs": int(vrpo.get("pairs", 0)),
        "mcq_by_question": {k: v.get("accuracy") for k, v in sorted(asks.items())},
        "sft_dev_loss": sft_dev_loss(*sft_logs) if sft_logs else {},
        "wall_seconds": round(wall_seconds, 1),
    }


def markdown(summary: dict, scores_path: str) -> str:
    """RESULTS.md text for ``summary``."""
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    lines = [
        "# egs/mini results",
        "",
        "Synthetic corpus (held-out voices and unseen sentences in test), tiny models, CPU.",
        f"Scores: `{scores_path}`.",
        "",
        "| metric | value | goal |",
        "|---|---|---|",
        f"| ASR WER (%) | {fmt(summary['asr_wer'])} | <= 40 |",
        f"| MCQ accuracy (%) | {fmt(summary['mcq_accuracy'])} | >= 60 (chance 25) |",
        f"| open-question accuracy (%) | {fmt(summary['open_qa_accuracy'])} | |",
        f"| held-out preference accuracy after SFT (%) | {fmt(summary['pref_accuracy_sft'])} | |",
        f"| held-out preference accuracy after VRPO (%) | {fmt(summary['pref_accuracy_vrpo'])} | > after SFT |",
        f"| wall time (s) | {summary['wall_seconds']:.0f} | <= 600 |",
        "",
        "MCQ accuracy per question type:",
        "",
        "| question | accuracy (%) |",
        "|---|---|",
        *(f"| {k} | {fmt(v)} |" for k, v in summary["mcq_by_question"].items()),
        "",
    ]
    if summary["sft_dev_loss"]:
        lines += [
            "Dev loss over SFT (stage 5), per task type; at the start: the stage-4 model it starts from:",
            "",
            "| loss | start | end | end / start |",
            "|---|---|---|---|",
            *(f"| {k} | {a:.4f} | {b:.4f} | {b / a:.2f} |" for k, (a, b) in summary["sft_dev_loss"].items()),
            "",
        ]
    return "\n".join(lines)


def _write(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scores", required=True, help="scores.json of the test set")
    parser.add_argument("--vrpo_log", required=True, help="train_log.txt of the VRPO stage")
    parser.add_argument("--wall_seconds", type=float, required=True, help="wall time of the run")
    parser.add_argument("--sft_logs", nargs=2, metavar=("START_LOG", "END_LOG"),
                        help="train_log.txt of the stage SFT starts from and of SFT (dev loss per task)")
    parser.add_argument("--results_md", default="RESULTS.md")
    parser.add_argument("--results_json", default="exp/results.json")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    if not os.path.exists(args.scores):
        sys.exit(f"summarize.py: {args.scores} is missing: run stages 8-9 first")
    summary = summarize(args.scores, args.vrpo_log, args.wall_seconds, args.sft_logs or ())
    text = markdown(summary, args.scores)
    _write(args.results_md, text)
    _write(args.results_json, json.dumps(summary, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
