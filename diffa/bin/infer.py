"""Answer one question about one audio file with a DIFFA model.

Usage:
  python -m diffa.bin.infer --model_dir exp/stage4_vrpo --audio clip.wav --question "What is the speaker's gender?"
  python -m diffa.bin.infer --model_dir exp/m --audio talk.flac --question "Transcribe the audio." \\
      --config conf/decode_asr.yaml --task asr [--tokenizer_dir DIR] [--device cuda] \\
      [--gen_length 64 --block_length 64 --steps 64] ...

The audio may be any format libsndfile reads, at any sample rate and with any number of channels
(it is averaged to mono and resampled to 16 kHz; only the first 30 s are used). Decoding settings
come from the config (a ``conf/decode_*.yaml``, as ``--config`` or the first argument; default:
``diffa.decode.config``'s defaults) and the same flags as ``diffa.bin.decode``, less the batching
ones. Prints the answer; ``--verbose true`` adds NFE and time.
"""

import argparse
import logging
import sys
from typing import List, Optional

from diffa.bin._cli import entry_point_parser
from diffa.decode.config import KEYS, add_config_arguments, add_config_file_argument, config_file, config_from_args
from diffa.decode.infer import answer
from diffa.decode.loading import add_model_arguments, load_for_decoding


def get_parser() -> argparse.ArgumentParser:
    """The command-line parser.

    Example
    -------
    >>> args = get_parser().parse_args(["--model_dir", "m", "--audio", "a.wav", "--question", "Who?"])
    >>> args.model_dir, args.config, args.task
    ('m', None, None)
    """
    parser = entry_point_parser("diffa.bin.infer", __doc__)
    parser.add_argument("--model_dir", "--model", dest="model_dir", required=True, help="DIFFA model directory")
    parser.add_argument("--audio", required=True, help="audio file (any rate, any channel count)")
    parser.add_argument("--question", required=True, help="the instruction about the audio")
    add_config_file_argument(parser)
    parser.add_argument("--task", choices=("asr", "mcq", "open_qa"),
                        help="apply the config's task_overrides for this task type")
    add_model_arguments(parser)
    parser.add_argument("--verbose", choices=("true", "false"), default="false", help="also print NFE and seconds")
    add_config_arguments(parser, [key for key in KEYS if key not in ("batch_size", "max_tokens")])  # one example
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line (module docstring); returns the exit status."""
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        config_path = config_file(args)
        config = config_from_args(args, config_path)
        model, tokenizer = load_for_decoding(args.model_dir, args.tokenizer_dir, args.device, args.dtype, args.audio_dtype)
        out = answer(model, tokenizer, args.audio, args.question, config=config, task=args.task)
    except (ValueError, OSError) as err:  # diffa.data.audio.AudioError is a ValueError
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    print(out.text)
    if config.task_overrides and args.task is None and len(tokenizer.encode(out.text)) >= config.gen_length - 1:
        logging.getLogger("diffa.bin.infer").warning(
            "the answer fills its %d positions and may be cut short: the config's settings for task types %s "
            "(e.g. ASR's longer answers) apply with --task", config.gen_length, ", ".join(sorted(config.task_overrides)))
    if not out.text.strip():
        logging.getLogger("diffa.bin.infer").warning(
            "the answer is empty%s: decode with the recipe's settings (its conf/decode*.yaml as the config, "
            "and --task) or a --gen_length that fits the answer", "" if config_path else
            " with the built-in decoding settings")
    if args.verbose == "true":
        print(f"# nfe {out.nfe}, {out.seconds:.2f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
