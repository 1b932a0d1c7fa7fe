"""Answer questions about audio files with a DIFFA model: one, or a file of them.

Usage:
  python -m diffa.bin.infer --model_dir exp/stage4_vrpo --audio clip.wav --question "What is the speaker's gender?"
  python -m diffa.bin.infer --model_dir exp/m --audio talk.flac --question "Transcribe the audio." \\
      --config conf/decode_asr.yaml --task asr [--tokenizer_dir DIR] [--device cuda] \\
      [--gen_length 64 --block_length 64 --steps 64] ...
  python -m diffa.bin.infer --model_dir exp/m --questions questions.jsonl [--config ...] > answers.jsonl

A questions file has one JSON object per line: {"audio": "clip.wav", "question": "...", "task": "mcq",
"id": "q1"} (task and id optional; --task applies to lines without one; see
``diffa.decode.infer.read_questions``). The model is loaded once, and each answer is printed as
it comes, as one JSON line: the question's fields plus "answer" ("nfe" and "seconds" too with
``--verbose true``), or "error" for a question that could not be answered (the others still are;
the exit status is then 1).

The audio may be any format libsndfile reads, at any sample rate and with any number of channels
(it is averaged to mono and resampled to 16 kHz; only the first 30 s are used). Decoding settings
come from the config (a ``conf/decode_*.yaml``, as ``--config`` or the first argument; default:
``diffa.decode.config``'s defaults) and the same flags as ``diffa.bin.decode``, less the batching
ones. Prints the answer; ``--verbose true`` adds NFE and time.
"""

import argparse
import json
import logging
import sys
from typing import List, Optional

from tqdm import tqdm

from diffa.bin._cli import entry_point_parser
from diffa.data.tasks import TASK_TYPES
from diffa.decode.config import KEYS, add_config_arguments, add_config_file_argument, config_file, config_from_args
from diffa.decode.infer import Question, answer, read_questions
from diffa.decode.loading import add_model_arguments, load_for_decoding

logger = logging.getLogger("diffa.bin.infer")


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
    parser.add_argument("--audio", help="audio file (any rate, any channel count)")
    parser.add_argument("--question", help="the instruction about the audio")
    parser.add_argument("--questions", metavar="JSONL",
                        help="instead of --audio and --question: a file of questions, answered as JSON lines")
    add_config_file_argument(parser)
    parser.add_argument("--task", choices=TASK_TYPES,
                        help="apply the config's task_overrides for this task type (with --questions: "
                             "for lines without a task)")
    add_model_arguments(parser)
    parser.add_argument("--verbose", choices=("true", "false"), default="false",
                        help="also print NFE and seconds (with --questions: in each JSON line)")
    add_config_arguments(parser, [key for key in KEYS if key not in ("batch_size", "max_tokens")])  # one example
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line (module docstring); returns the exit status.

    Example
    -------
    A random tiny model, a file of one question about half a second of silence, then a missing file:

    >>> import contextlib, tempfile, numpy as np, soundfile
    >>> from diffa.model.diffa import DIFFA, tiny_config
    >>> from diffa.text.tokenizer import SentencePieceTokenizer, train_sentencepiece
    >>> tmp = tempfile.TemporaryDirectory(); d = tmp.name
    >>> tok = SentencePieceTokenizer(train_sentencepiece(["what is said"] * 4, f"{d}/tok/spm.model", vocab_size=300))
    >>> DIFFA(tiny_config(vocab=tok.vocab_size)).save_pretrained(f"{d}/model")
    >>> soundfile.write(f"{d}/a.wav", np.zeros(8000, np.float32), 16000)
    >>> _ = open(f"{d}/q.jsonl", "w").write(json.dumps({"id": "q1", "audio": f"{d}/a.wav", "question": "What is said?"}))
    >>> model = ["--model_dir", f"{d}/model", "--tokenizer_dir", f"{d}/tok", "--device", "cpu",
    ...          "--gen_length", "4", "--block_length", "4", "--steps", "4"]
    >>> main([*model, "--questions", f"{d}/q.jsonl"])
    {"id": "q1", "audio": "/.../a.wav", "question": "What is said?", "answer": "..."}
    0
    >>> with contextlib.redirect_stderr(sys.stdout):  # bad input: one ERROR line on stderr, status 1
    ...     main([*model, "--audio", f"{d}/gone.wav", "--question", "Who speaks?"])
    ERROR: /.../gone.wav does not exist
    1
    >>> tmp.cleanup()
    """
    parser = get_parser()
    args = parser.parse_args(argv)
    if args.questions is not None and (args.audio or args.question):
        parser.error("--questions replaces --audio and --question: give either")
    if args.questions is None and not (args.audio and args.question):
        parser.error("give --audio and --question (one question), or --questions JSONL (a file of them)")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        config_path = config_file(args)
        config = config_from_args(args, config_path)
        questions = read_questions(args.questions) if args.questions else None  # its errors before the load
        model, tokenizer = load_for_decoding(args.model_dir, args.tokenizer_dir, args.device, args.dtype, args.audio_dtype)
        if questions is None:
            out = answer(model, tokenizer, args.audio, args.question, config=config, task=args.task)
    except (ValueError, OSError) as err:  # diffa.data.audio.AudioError is a ValueError
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    if questions is not None:
        return answer_file(model, tokenizer, questions, config, args.task, config_path, args.verbose == "true")
    print(out.text)
    for note in notes(tokenizer, out.text, config, args.task, config_path):
        logger.warning(note)
    if args.verbose == "true":
        print(f"# nfe {out.nfe}, {out.seconds:.2f} s", file=sys.stderr)
    return 0


def answer_file(model, tokenizer, questions: List[Question], config, task: Optional[str], config_path,
                verbose: bool = False) -> int:
    """Answer ``questions`` (``task``: for those without one), printing a JSON line each (``verbose``:
    with NFE and seconds); returns the exit status.

    Example
    -------
    >>> import os, tempfile, numpy as np, soundfile
    >>> from diffa.decode.config import DecodeConfig
    >>> from diffa.model.diffa import DIFFA, tiny_config
    >>> from diffa.text.tokenizer import SentencePieceTokenizer, train_sentencepiece
    >>> tmp = tempfile.TemporaryDirectory()
    >>> tok = SentencePieceTokenizer(train_sentencepiece(["what is said"] * 4, f"{tmp.name}/spm.model", vocab_size=300))
    >>> soundfile.write(f"{tmp.name}/a.wav", np.zeros(8000, np.float32), 16000)
    >>> questions = [Question("q1", f"{tmp.name}/a.wav", "What is said?", "asr"),
    ...              Question("q2", f"{tmp.name}/gone.wav", "Who speaks?", None)]
    >>> answer_file(DIFFA(tiny_config(vocab=tok.vocab_size)).eval(), tok, questions,
    ...             DecodeConfig(gen_length=4, block_length=4, steps=4), None, None, verbose=True)
    {"id": "q1", "audio": "/.../a.wav", "question": "What is said?", "task": "asr", "answer": "...", "nfe": ..., "seconds": ...}
    {"id": "q2", "audio": "/.../gone.wav", "question": "Who speaks?", "error": "/.../gone.wav does not exist"}
    1
    >>> tmp.cleanup()
    """
    failed, noted = [], {}
    for question in tqdm(questions, desc="questions", unit="question", disable=None):
        row = {key: value for key, value in question._asdict().items() if value is not None}
        row_task = question.task or task
        try:
            out = answer(model, tokenizer, question.audio, question.question, config=config, task=row_task)
        except (ValueError, OSError) as err:
            failed.append(question.id)
            row["error"] = str(err)
            logger.error("question %s: %s", question.id, err)
        else:
            row["answer"] = out.text
            if verbose:
                row.update(nfe=out.nfe, seconds=round(out.seconds, 3))
            for note in notes(tokenizer, out.text, config, row_task, config_path, how='a "task" on its line'):
                noted.setdefault(note, []).append(question.id)
        print(json.dumps(row, ensure_ascii=False), flush=True)
    for note, ids in noted.items():
        logger.warning("%d answer(s) (%s): %s", len(ids), ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else ""), note)
    if failed:
        logger.error("%d of %d questions could not be answered: %s", len(failed), len(questions), ", ".join(failed))
        return 1
    return 0


def notes(tokenizer, text: str, config, task: Optional[str], config_path, how: str = "--task") -> List[str]:
    """What to say about an answer: one that may be cut short for want of the task's settings, or is empty.

    ``how`` names the way to give a question its task type.

    Example
    -------
    >>> from diffa.decode.config import DecodeConfig
    >>> class Words:  # a stand-in tokenizer (notes only counts the pieces of encode)
    ...     def encode(self, text): return text.split()
    >>> notes(Words(), "a cat", DecodeConfig(), "asr", "conf/decode.yaml")
    []
    >>> notes(Words(), "", DecodeConfig(), None, None)
    ["the answer is empty with the built-in decoding settings: decode with the recipe's settings ..."]
    >>> asr = {"asr": {"gen_length": 64, "block_length": 64, "steps": 64}}
    >>> notes(Words(), "one two three four", DecodeConfig(gen_length=4, block_length=4, steps=4,
    ...       task_overrides=asr), None, "conf/decode.yaml")
    ["the answer fills its 4 positions and may be cut short: the config's settings for task types asr ... apply with --task"]
    """
    said = []
    if config.task_overrides and task is None and len(tokenizer.encode(text)) >= config.gen_length - 1:
        said.append(f"the answer fills its {config.gen_length} positions and may be cut short: the config's settings "
                    f"for task types {', '.join(sorted(config.task_overrides))} (e.g. ASR's longer answers) apply "
                    f"with {how}")
    if not text.strip() and not config_path:
        said.append("the answer is empty with the built-in decoding settings: decode with the recipe's settings "
                    f"(its conf/decode*.yaml as the config, and {how}) or a --gen_length that fits the answer")
    elif not text.strip() and task is None and config.task_overrides:
        said.append(f"the answer is empty: give the question's task type ({how}) so that the config's settings "
                    "for it apply")
    elif not text.strip():
        said.append("the answer is empty: the model's answer ends before its first word")
    return said


if __name__ == "__main__":
    sys.exit(main())
