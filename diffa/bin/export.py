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


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line (``argv``: default ``sys.argv[1:]``); returns the exit status."""
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def work():
        model = DIFFA.from_pretrained(require_model_dir(args.model_dir))
        model.save_pretrained(args.out_dir, merge=True, link_frozen=False)
        print(f"exported {args.model_dir} -> {args.out_dir} (LoRA merged, no links)")

    exit_on_sigterm()
    return error_status(work)


if __name__ == "__main__":
    sys.exit(main())
