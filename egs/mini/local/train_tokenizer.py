#!/usr/bin/env python3
"""Train the SentencePiece tokenizer of egs/mini (the tiny LLaDA's vocabulary).

Usage:
  local/train_tokenizer.py --tasks data/train/tasks.jsonl \\
      --out exp/pretrained/tokenizer/spm.model --vocab_size 768 --model_type bpe

The model is trained on every answer of the training tasks and on the full chat prompt of every
distinct instruction, with both the DIFFA and the DIFFA-2 system prompt
(``diffa.text.template.prompt_text``), so the template's fixed text and the corpus's words become
single pieces: with BPE and 768 pieces an answer word is one piece and a prompt about 50. The
six special tokens are user-defined symbols and byte fallback covers any other text
(``diffa.text.tokenizer.train_sentencepiece``). Training is single-threaded and deterministic;
the model file is written atomically.
"""
import argparse
import logging
import sys

from diffa.data.tasks import read_tasks
from diffa.text.template import SYSTEM_PROMPT, SYSTEM_PROMPT_DIFFA2, prompt_text
from diffa.text.tokenizer import load_tokenizer, train_sentencepiece

logger = logging.getLogger("train_tokenizer")


def get_parser():
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", required=True, help="training tasks.jsonl")
    parser.add_argument("--out", required=True, help="output model file (…/spm.model)")
    parser.add_argument("--vocab_size", type=int, default=768,
                        help="most pieces; with byte fallback it must exceed 263 + distinct characters")
    parser.add_argument("--model_type", choices=("bpe", "unigram"), default="bpe")
    return parser


def tokenizer_texts(rows):
    """The sentences the tokenizer learns from: every answer, then each distinct instruction's
    prompt under both system prompts.

    Arguments
    ---------
    rows : list of dict
        Task rows (``diffa.data.tasks``).

    Returns
    -------
    list of str

    Example
    -------
    >>> texts = tokenizer_texts([{"instruction": "Say it.", "answer": "yes"}] * 2)
    >>> len(texts), texts[0], texts[2].endswith("<|end_header_id|>\\n\\n")
    (4, 'yes', True)
    """
    instructions = sorted({row["instruction"] for row in rows})
    return ([row["answer"] for row in rows]
            + [prompt_text(i, system) for system in (SYSTEM_PROMPT, SYSTEM_PROMPT_DIFFA2) for i in instructions])


def main():
    """Train, then log the vocabulary size and the mean prompt/answer lengths in pieces."""
    args = get_parser().parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rows = read_tasks(args.tasks)
    path = train_sentencepiece(tokenizer_texts(rows), args.out, vocab_size=args.vocab_size,
                               model_type=args.model_type)
    tok = load_tokenizer(path.parent)
    answers = [len(tok.encode(row["answer"])) for row in rows]
    prompt = len(tok.encode(prompt_text(rows[0]["instruction"])))
    logger.info("%s: %d pieces; answers %.1f pieces on average (max %d); a prompt about %d",
                path, tok.vocab_size, sum(answers) / len(answers), max(answers), prompt)


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"local/train_tokenizer.py: error: {err}")
