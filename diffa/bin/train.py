"""Train one curriculum stage of DIFFA from a HyperPyYAML config (recipe stages 3, 4, 5 and 7).

Usage:
  python -m diffa.bin.train CONFIG --output_folder exp/stage3_sft \\
      --train_data dump/train_qa,dump/train_asr [--valid_data dump/dev] \\
      [--init_from exp/stage2_acoustic/final] [--key value ...]

  # several GPUs / nodes: the same command under torchrun
  torchrun --nproc_per_node 8 -m diffa.bin.train CONFIG --output_folder ... --train_data ...

  e.g. python -m diffa.bin.train conf/stage3_sft.yaml --output_folder exp/stage3_sft \\
         --train_data dump/train --init_from exp/stage2_acoustic/final --lr 1e-4 \\
         --batching.max_tokens 4000 --avg 3

Any config key (``diffa.train.hparams`` lists them) can be overridden with ``--key value`` or
``--section.key value`` (values are YAML); an unknown key is an error that lists the valid ones.
The stage (``stage:`` in CONFIG) picks what trains (``diffa.train.stages``).

Writes, under --output_folder:
  train_log.txt      one line per log_interval optimizer steps (loss, lr, grad norm, examples/s, ETA)
  save/CKPT+*/       checkpoints (trainable weights, optimizer, progress); rerunning the same command
                     resumes from the newest one exactly where it stopped
  final/             the trained model (a DIFFA directory; the next stage's --init_from)
  loss.png           the loss curve
  config.yaml        the resolved configuration

On CPU (and for torchrun without GPUs) processes talk over gloo; on GPUs over NCCL.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import List, Optional

import speechbrain as sb
import torch
import yaml

from diffa.bin._cli import entry_point_parser, exit_on_sigterm
from diffa.text.tokenizer import load_tokenizer
from diffa.train.hparams import load_config, parse_overrides
from diffa.train.model_init import init_model
from diffa.train.sft import SFTBrain

logger = logging.getLogger("diffa.bin.train")

PATH_ARGS = ("output_folder", "train_data", "valid_data", "init_from", "ref_model", "pairs")


def get_parser() -> argparse.ArgumentParser:
    """Command-line options (config overrides are the unknown ``--key value`` pairs).

    Example
    -------
    >>> args, overrides = get_parser().parse_known_args(["c.yaml", "--output_folder", "exp/x", "--lr", "1e-4"])
    >>> args.output_folder, overrides
    ('exp/x', ['--lr', '1e-4'])
    """
    parser = entry_point_parser("diffa.bin.train", __doc__, allow_abbrev=False)
    parser.add_argument("config", help="HyperPyYAML training config (egs/<recipe>/conf/<stage>.yaml)")
    parser.add_argument("--output_folder", help="experiment directory, e.g. exp/stage3_sft")
    parser.add_argument("--train_data", help="comma-separated dump directories (feats.scp + tasks.jsonl)")
    parser.add_argument("--valid_data", help="dump directory scored for validation loss after every epoch")
    parser.add_argument("--init_from", help="model to start from: the previous stage's final/ (or its exp dir)")
    parser.add_argument("--ref_model", help="stage vrpo only: the frozen reference model")
    parser.add_argument("--pairs", help="stage vrpo only: preference-pair directory")
    parser.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda:LOCAL_RANK when GPUs exist, else cpu)")
    parser.add_argument(
        "--distributed_backend", choices=("nccl", "gloo", "mpi"), help="under torchrun (default: nccl on GPU, gloo on CPU)"
    )
    return parser


def brain_class(stage: str):
    """The Brain that trains ``stage``.

    Example
    -------
    >>> brain_class("sft").__name__, brain_class("vrpo").__name__
    ('SFTBrain', 'VRPOBrain')
    """
    if stage != "vrpo":
        return SFTBrain
    try:
        from diffa.train.vrpo import VRPOBrain
    except ImportError as err:
        raise ValueError(f"stage 'vrpo' needs diffa.train.vrpo, which is not available ({err})") from None
    return VRPOBrain


def _setup_logging(rank: int) -> None:
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def main(argv: Optional[List[str]] = None) -> None:
    """Parse the command line and the config, then :func:`train`; bad input exits with its message.

    Example
    -------
    An unknown config key is refused, with the valid ones, before anything is loaded (a run that
    trains: :func:`train`):

    >>> import contextlib, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "sft.yaml")
    >>> _ = open(path, "w").write("stage: sft\\n")
    >>> try:
    ...     with contextlib.redirect_stderr(sys.stdout):
    ...         main([path, "--output_folder", "exp/sft", "--learning_rate", "1e-4"])
    ... except SystemExit as stop:
    ...     print("exit status", stop.code)
    usage: python -m diffa.bin.train [-h] ...
    python -m diffa.bin.train: error: unknown config key 'learning_rate' (command line); valid keys at the top
    level: stage, output_folder, ..., lr, ...
    exit status 2
    """
    args, rest = get_parser().parse_known_args(argv)
    try:
        overrides = parse_overrides(rest)
        overrides.update({k: getattr(args, k) for k in PATH_ARGS if getattr(args, k)})
        config = load_config(args.config, overrides)
        if not config["output_folder"]:
            raise ValueError("no --output_folder")
        if config["stage"] != "vrpo" and (config["ref_model"] or config["pairs"]):
            raise ValueError("--ref_model and --pairs belong to stage vrpo")
    except ValueError as err:
        get_parser().error(str(err))
    _setup_logging(int(os.environ.get("RANK", 0)))
    exit_on_sigterm()
    try:
        train(config, args)
    except (ValueError, FileNotFoundError) as err:  # bad input: the message says what to fix
        logger.error("%s", err)
        sys.exit(1)


def train(config: dict, args: argparse.Namespace) -> None:
    """Build the model and data of ``config``, train, write ``final/``.

    Arguments
    ---------
    config : dict
        The resolved training config (:func:`diffa.train.hparams.load_config`).
    args : argparse.Namespace
        The command line of :func:`get_parser` (``device``, ``distributed_backend`` are used).

    Example
    -------
    Stage ``sft`` from scratch on a toy setup (2 examples, one batch: one optimizer step):

    >>> import tempfile
    >>> from diffa.train.plot import read_log
    >>> from diffa.train.toy import make_toy_setup
    >>> with tempfile.TemporaryDirectory() as d:
    ...     toy = make_toy_setup(d, n_examples=2, answer_words=(1, 1))
    ...     path, exp = os.path.join(d, "sft.yaml"), os.path.join(d, "exp")
    ...     _ = open(path, "w").write(yaml.safe_dump({
    ...         "stage": "sft", "tokenizer_dir": toy["tokenizer_dir"], "model": toy["model"],
    ...         "init": {"whisper_dir": toy["whisper_dir"], "llada_dir": toy["llada_dir"]},
    ...         "batching": {"max_batch_size": 2, "num_buckets": 1}}))
    ...     config = load_config(path, {"output_folder": exp, "train_data": toy["dump"]})
    ...     train(config, get_parser().parse_args([path, "--device", "cpu"]))
    ...     written = sorted(os.listdir(exp)), sorted(os.listdir(os.path.join(exp, "final")))
    ...     steps = [row["step"] for row in read_log(os.path.join(exp, "train_log.txt"))["train"]]
    stage sft: trainable parameters:
    ...
    model: .../exp/final
    >>> written
    (['config.yaml', 'final', 'loss.png', 'save', 'train_log.txt'],
     ['adapters.safetensors', 'config.json', 'encoder', 'llm', 'lora.safetensors', 'tokenizer'])
    >>> steps
    [1]
    """
    backend = args.distributed_backend or ("nccl" if torch.cuda.is_available() else "gloo")
    run_opts = {"distributed_backend": backend, "noprogressbar": not sys.stderr.isatty()}
    if args.device:
        run_opts["device"] = args.device
    sb.utils.distributed.ddp_init_group(run_opts)
    main_process = sb.utils.distributed.if_main_process()
    if torch.distributed.is_initialized():
        logger.info("process %d of %d (%s backend)", torch.distributed.get_rank(), torch.distributed.get_world_size(), torch.distributed.get_backend())

    tokenizer = load_tokenizer(config["tokenizer_dir"])
    cls = brain_class(config["stage"])
    train_set, valid_set = cls.load_data(config, tokenizer)  # bad data fails before a model is loaded
    torch.manual_seed(config["seed"])
    model, summary = init_model(config)
    if main_process:
        os.makedirs(config["output_folder"], exist_ok=True)
        print(f"stage {config['stage']}: {summary}", flush=True)
        path = os.path.join(config["output_folder"], "config.yaml")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            yaml.safe_dump(config, f, sort_keys=False)
        os.replace(path + ".tmp", path)
    brain = cls(model, config, tokenizer, run_opts=run_opts)
    final = brain.fit_stage(train_set, valid_set)
    if main_process:
        print(f"model: {final}", flush=True)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
