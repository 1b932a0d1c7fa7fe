"""Export a trained model as one self-contained directory (recipe stage 10).

Usage:
  python -m diffa.bin.export --model_dir exp/stage4_vrpo --out_dir exp/export/stage4_vrpo

LoRA is merged into the LLaDA weights and the encoder, LLM and tokenizer are written as real
files (no links to the training directories), so the result can be copied anywhere and loaded
with ``diffa.model.diffa.DIFFA.from_pretrained(out_dir)`` alone.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from diffa.bin._cli import entry_point_parser, error_status, exit_on_sigterm
from diffa.model.diffa import DIFFA
from diffa.train.model_init import require_model_dir


def get_parser() -> argparse.ArgumentParser:
    """The command-line parser.

    Example
    -------
    >>> get_parser().parse_args(["--model_dir", "exp/stage4_vrpo", "--out_dir", "exp/export/stage4_vrpo"]).out_dir
    'exp/export/stage4_vrpo'
    """
    parser = entry_point_parser("diffa.bin.export", __doc__)
    parser.add_argument("--model_dir", required=True, help="a DIFFA model directory, or a training stage's exp dir (its final/)")
    parser.add_argument("--out_dir", required=True, help="where to write the exported model")
    return parser


def check_out_dir(model_dir: Path, out_dir: str) -> None:
    """Refuse an output directory that is the model, lies inside it or holds it: the export
    replaces its output directory as a whole.

    Example
    -------
    >>> check_out_dir(Path("exp/stage3_sft/final"), "exp/export/stage3_sft")
    >>> check_out_dir(Path("exp/stage3_sft/final"), "exp/stage3_sft")
    Traceback (most recent call last):
     ...
    ValueError: --out_dir exp/stage3_sft would replace the model exp/stage3_sft/final (holds it): export to a directory of its own, e.g. exp/export/stage3_sft
    """
    source, target = model_dir.resolve(), Path(out_dir).resolve()
    relation = ("is it" if target == source else "holds it" if target in source.parents
                else "lies inside it" if source in target.parents else None)
    if relation:
        name = (source.parent if source.name == "final" else source).name
        raise ValueError(f"--out_dir {out_dir} would replace the model {model_dir} ({relation}): export to a "
                         f"directory of its own, e.g. exp/export/{name}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line (``argv``: default ``sys.argv[1:]``); returns the exit status.

    Example
    -------
    >>> import contextlib, os, signal, tempfile
    >>> from diffa.model.diffa import tiny_config
    >>> tmp = tempfile.TemporaryDirectory(); model_dir = os.path.join(tmp.name, "stage3_sft", "final")
    >>> DIFFA(tiny_config()).save_pretrained(model_dir)
    >>> sigterm = signal.getsignal(signal.SIGTERM)   # main turns SIGTERM into SystemExit (a clean stop)
    >>> main(["--model_dir", model_dir, "--out_dir", os.path.join(tmp.name, "export")])
    exported /.../stage3_sft/final -> /.../export (LoRA merged, no links)
    0
    >>> sorted(os.listdir(os.path.join(tmp.name, "export")))
    ['adapters.safetensors', 'config.json', 'encoder', 'llm']
    >>> with contextlib.redirect_stderr(sys.stdout):  # bad input: one ERROR line on stderr, status 1
    ...     main(["--model_dir", model_dir, "--out_dir", os.path.join(tmp.name, "stage3_sft")])
    ERROR: --out_dir /.../stage3_sft would replace the model /.../stage3_sft/final (holds it): export to a directory
    of its own, e.g. exp/export/stage3_sft
    1
    >>> _ = signal.signal(signal.SIGTERM, sigterm); tmp.cleanup()
    """
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def work():
        source = require_model_dir(args.model_dir)
        check_out_dir(source, args.out_dir)
        model = DIFFA.from_pretrained(source)
        model.save_pretrained(args.out_dir, merge=True, link_frozen=False)
        print(f"exported {args.model_dir} -> {args.out_dir} (LoRA merged, no links)")

    exit_on_sigterm()
    return error_status(work)


if __name__ == "__main__":
    sys.exit(main())
