"""Convert an authors' DIFFA / DIFFA-2 checkpoint into a diffa model directory.

Usage:
  python -m diffa.bin.import_official --src DIFFA-2-ckpt \\
      --whisper whisper-large-v3 --llada LLaDA-8B-Instruct --out_dir exp/diffa2_official

``--src`` holds the authors' ``config.json`` (with ``whisper_config`` / ``llm_config``) and
``pytorch_model.bin`` (read with ``weights_only=True``), ``model.safetensors``, or shards of either
with their ``*.index.json``; ``--whisper`` and ``--llada`` are the
official checkpoint directories the authors trained on. The result loads with
``diffa.model.DIFFA.from_pretrained(out)`` and reproduces the authors' behaviour (see
``diffa.model.official``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence

from diffa.bin._cli import entry_point_parser, error_status
from diffa.model.official import import_official


def get_parser() -> argparse.ArgumentParser:
    """The command-line parser.

    Example
    -------
    >>> args = get_parser().parse_args(["--src", "ckpt", "--whisper", "w", "--llada", "l", "--out", "exp/m"])
    >>> args.out_dir, args.layout, args.lora_alpha   # --out is the older spelling of --out_dir
    ('exp/m', None, None)
    """
    parser = entry_point_parser("diffa.bin.import_official", __doc__)
    parser.add_argument("--src", required=True, help="the authors' checkpoint directory")
    parser.add_argument("--whisper", required=True, help="official Whisper checkpoint directory")
    parser.add_argument("--llada", required=True, help="official LLaDA-8B-Instruct directory")
    parser.add_argument("--out_dir", "--out", dest="out_dir", required=True, help="output diffa model directory")
    parser.add_argument("--layout", choices=("stage1", "dual"), default=None,
                        help="audio layout (default: dual when the checkpoint has acoustic weights)")
    parser.add_argument("--lora_alpha", type=float, default=None,
                        help="LoRA alpha (default: a peft adapter_config.json's in --src, else 16)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line (``argv``: default ``sys.argv[1:]``); returns the exit status.

    Example
    -------
    A checkpoint directory without the authors' ``config.json`` (a full conversion:
    :func:`diffa.model.official.import_official`) is one ERROR line on stderr, status 1:

    >>> import contextlib, tempfile
    >>> src = tempfile.mkdtemp()
    >>> with contextlib.redirect_stderr(sys.stdout):
    ...     main(["--src", src, "--whisper", "whisper-large-v3", "--llada", "LLaDA-8B-Instruct", "--out_dir", "exp/m"])
    ERROR: /...: missing config.json (the authors' checkpoints have one with whisper_config/llm_config)
    1
    """
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def work():
        model = import_official(args.src, args.whisper, args.llada, out=args.out_dir, layout=args.layout, lora_alpha=args.lora_alpha)
        print(f"imported {args.src} -> {args.out_dir} (layout {model.config.layout}, LoRA {'yes' if model.config.lora else 'no'})")

    return error_status(work)


if __name__ == "__main__":
    sys.exit(main())
