"""Decode a test set (or one job's shard of it) with a DIFFA model; resumable.

Usage:
  python -m diffa.bin.decode conf/decode_mcq.yaml \\
      --model_dir exp/stage4_vrpo --data_dir data/mmsu/split8/3 --feats_dir dump/mmsu \\
      --out exp/stage4_vrpo/decode_decode_mcq/mmsu/results.3.jsonl [--batch_size 32] [--factor none] ...

  # a manifest outside a data directory, one output file
  python -m diffa.bin.decode --model_dir exp/m --tasks my_tasks.jsonl \\
      --feats_scp dump/test/feats.scp --out exp/m/decode_custom/test/results.jsonl \\
      --gen_length 64 --block_length 64 --steps 64

Reads the examples of ``tasks.jsonl`` (``--data_dir``'s, or ``--tasks``) and their log-mel
features (``--feats_dir``'s ``feats.scp``, or ``--feats_scp``), decodes them in length-sorted,
left-padded batches (one task type per batch) with the settings of the config file (keys and
defaults: ``diffa.decode.config``; every key is also a flag, ``none`` clears an optional one),
and writes:

  <out>            one JSON row per example, sorted by id (format: diffa.decode.results);
                   it appears, atomically, only when every example has a row
  <out>.partial    rows so far, appended batch by batch; a re-run resumes from it (or from a
                   finished <out>): it keeps the rows that succeeded and decodes the others (a
                   truncated last line is dropped and its example decoded again)
  settings.json    beside <out>: model, decode settings, dtype (the LLM's) and audio_dtype (the
                   encoder's and the adapters'), git hash and package versions (read by
                   diffa.bin.score for RESULTS.md); decoding with other settings while
                   results made with these are there (<out>, or another job's results.<job>.jsonl)
                   is an error

An example whose utterance has no features (missing or unreadable audio, listed in
``<feats_dir>/bad_utts``) or whose features cannot be read gets a row with ``"failed": true``
and the reason; decoding continues, and the summary line counts them (when every example failed,
or there was none, the exit status is 1: nothing was decoded). A re-run decodes failed
rows again (once the features are there). Nothing is written before the model directory and
the settings are checked. The recipe's stage 8 (``egs/TEMPLATE/diffa.sh``) runs one job per
shard and concatenates ``results.<job>.jsonl``.
"""

import argparse
import logging
import os
import sys
from typing import Dict, List, Optional

from diffa.bin._cli import entry_point_parser
from diffa.data.dataset import TaskDataset
from diffa.data.kaldi import load_feats
from diffa.data.tasks import read_tasks
from diffa.decode.config import (DecodeConfig, add_config_arguments, add_config_file_argument, config_file,
                                 config_from_args)
from diffa.decode.decoder import decode_dataset
from diffa.decode.loading import add_model_arguments, check_model_dir, load_for_decoding, resolve_audio_dtype, resolve_device
from diffa.decode.results import ResultsFile, check_settings, result_row, write_settings

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    """The command-line parser.

    Example
    -------
    >>> args = get_parser().parse_args(["c.yaml", "--model_dir", "m", "--data_dir", "d",
    ...                                 "--feats_dir", "f", "--out", "r.jsonl", "--steps", "8"])
    >>> args.config, args.steps, args.dtype
    ('c.yaml', 8, None)
    """
    parser = entry_point_parser("diffa.bin.decode", __doc__)
    add_config_file_argument(parser)
    parser.add_argument("--model_dir", required=True, help="DIFFA model directory")
    tasks = parser.add_mutually_exclusive_group(required=True)
    tasks.add_argument("--data_dir", help="data directory (or split) whose tasks.jsonl is decoded")
    tasks.add_argument("--tasks", help="a tasks.jsonl to decode")
    feats = parser.add_mutually_exclusive_group(required=True)
    feats.add_argument("--feats_dir", help="feature directory dump/<set> (feats.scp, bad_utts)")
    feats.add_argument("--feats_scp", help="a feats.scp")
    parser.add_argument("--out", required=True, help="results file (results.jsonl or results.<job>.jsonl)")
    add_model_arguments(parser)
    parser.add_argument("--progress", choices=("true", "false"), default="true", help="show a progress bar")
    add_config_arguments(parser)
    return parser


def read_bad_utts(feats_dir: str) -> Dict[str, str]:
    """``utt -> reason`` from ``<feats_dir>/bad_utts`` (empty when there is none).

    Example
    -------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> _ = open(os.path.join(d, "bad_utts"), "w").write("u3 missing data/wav/u3.wav does not exist\\n")
    >>> read_bad_utts(d)
    {'u3': 'missing data/wav/u3.wav does not exist'}
    """
    path = os.path.join(feats_dir, "bad_utts")
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return dict((line.rstrip("\n").split(maxsplit=1) + [""])[:2] for line in f if line.strip())


def decode_settings(args: argparse.Namespace, config: DecodeConfig) -> dict:
    """The content of ``settings.json``: what the results depend on (not the batch size), with the
    dtypes of the LLM (``dtype``) and of the encoder and adapters (``audio_dtype``) spelled out.

    Example
    -------
    >>> args = get_parser().parse_args(["--model_dir", "exp/m/", "--tasks", "t.jsonl", "--feats_scp", "f.scp",
    ...                                 "--out", "r.jsonl", "--device", "cpu", "--audio_dtype", "same"])
    >>> s = decode_settings(args, DecodeConfig(factor=1.0, batch_size=8))
    >>> list(s)   # no batch_size, max_tokens, threshold or system_prompt: unset or irrelevant
    ['model', 'gen_length', 'block_length', 'steps', 'remasking', 'factor', 'temperature', 'cfg_scale',
     'stop_at_eos', 'seed', 'dtype', 'audio_dtype', 'git', 'versions']
    >>> s["model"], s["factor"], s["dtype"], s["audio_dtype"], sorted(s["versions"])
    ('exp/m', 1.0, 'float32', 'float32', ['diffa', 'torch', 'transformers'])
    """
    import diffa
    from diffa.provenance import git_hash, package_versions

    dtype = resolve_device(args.device, args.dtype)[1]
    settings = {"model": os.path.normpath(args.model_dir)}
    settings.update({k: v for k, v in config.to_dict().items() if k not in ("batch_size", "max_tokens")
                     and v is not None and v != {}})
    dtypes = {"dtype": dtype, "audio_dtype": resolve_audio_dtype(args.audio_dtype, dtype)}
    settings.update({key: str(value).replace("torch.", "") for key, value in dtypes.items()})
    settings.update({"git": git_hash(os.path.dirname(diffa.__file__)), "versions": package_versions()})
    return settings


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line (module docstring); returns the exit status.

    Example
    -------
    A random tiny model on the 3 examples of a toy dump, then the same command again:

    >>> import tempfile
    >>> from diffa.model.diffa import DIFFA, tiny_config
    >>> from diffa.text.tokenizer import load_tokenizer
    >>> from diffa.train.toy import make_toy_setup
    >>> tmp = tempfile.TemporaryDirectory()
    >>> toy = make_toy_setup(tmp.name, n_examples=3)   # dump/train/{feats.scp,tasks.jsonl}, tokenizer/
    >>> DIFFA(tiny_config(vocab=load_tokenizer(toy["tokenizer_dir"]).vocab_size)).save_pretrained(f"{tmp.name}/model")
    >>> args = ["--model_dir", f"{tmp.name}/model", "--tokenizer_dir", toy["tokenizer_dir"], "--data_dir", toy["dump"],
    ...         "--feats_dir", toy["dump"], "--out", f"{tmp.name}/decode/results.jsonl", "--device", "cpu",
    ...         "--progress", "false", "--gen_length", "4", "--block_length", "4", "--steps", "4"]
    >>> main(args)
    /.../decode/results.jsonl: 3 examples, 0 failed; this run decoded 3 in ... s (... items/s), mean NFE ...
    0
    >>> main(args)   # every example has its row: nothing to decode
    /.../decode/results.jsonl: 3 examples, 0 failed
    0
    >>> sorted(os.listdir(f"{tmp.name}/decode"))
    ['results.jsonl', 'settings.json']
    >>> tmp.cleanup()
    """
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tasks_path = args.tasks or os.path.join(args.data_dir, "tasks.jsonl")
    feats_scp = args.feats_scp or os.path.join(args.feats_dir, "feats.scp")
    try:
        config = config_from_args(args, config_file(args))
        tasks = read_tasks(tasks_path)
        feats = load_feats(feats_scp)
        results = ResultsFile(args.out)
        decoded_files = results.decoded_files()  # before settings.json is read (check_settings)
        earlier = results.read()
        settings = decode_settings(args, config)
        settings_path = os.path.join(os.path.dirname(os.path.abspath(args.out)), "settings.json")
        check_settings(settings_path, settings, decoded_files)
        done = {i: row for i, row in earlier.items() if not row.get("failed")}  # failed rows are retried
        todo = [t for t in tasks if t["id"] not in done]
        logger.info("%s: %d examples, %d already decoded, %d to go (%d failed before)", tasks_path, len(tasks),
                    len(tasks) - len(todo), len(todo), sum(t["id"] in earlier for t in todo))
        missing = [t for t in todo if t["utt"] not in feats]
        decoding = len(missing) < len(todo)
        # nothing is written before the model is checked (and loaded, when there is something to decode)
        if decoding:
            model, tokenizer = load_for_decoding(args.model_dir, args.tokenizer_dir, args.device, args.dtype, args.audio_dtype)
        else:
            check_model_dir(args.model_dir, args.tokenizer_dir)
        write_settings(settings_path, settings)
        if todo:
            results.restart(done.values())
        bad = read_bad_utts(os.path.dirname(feats_scp))
        failed = []
        for task in missing:
            reason = bad.get(task["utt"], f"not in {feats_scp}")
            logger.error("%s: no features for utt %s (%s); marked failed", task["id"], task["utt"], reason)
            failed.append(result_row(task, error=f"no features: {reason}"))
        results.append(failed)
        stats = None
        if decoding:
            dataset = TaskDataset(tasks_path, feats_scp, tokenizer, system=config.system_prompt, with_answer=False)
            stats = decode_dataset(model, tokenizer, dataset, config, results.append, done=set(done),
                                   progress=args.progress == "true")
        rows = results.finish([t["id"] for t in tasks])
    except (ValueError, OSError) as err:
        print(f"ERROR: decoding {tasks_path}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: what was decoded is in the results file already
        print(f"\ninterrupted: {args.out} keeps the batches decoded so far; the same command resumes", file=sys.stderr)
        return 130
    n_failed = sum(bool(row.get("failed")) for row in rows)
    line = f"{args.out}: {len(rows)} examples, {n_failed} failed"
    if stats is not None and stats.decoded:
        line += (f"; this run decoded {stats.decoded} in {stats.seconds:.1f} s "
                 f"({stats.decoded / max(stats.seconds, 1e-9):.2f} items/s), mean NFE {stats.nfe / stats.decoded:.1f}")
    print(line)
    if n_failed == len(rows):
        why = f"every one of its {len(rows)} examples failed (first: {rows[0]['id']}: {rows[0]['error']})" if rows else "no examples"
        print(f"ERROR: decoding {tasks_path}: {why}; nothing was decoded", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
