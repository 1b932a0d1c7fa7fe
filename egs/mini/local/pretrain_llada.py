#!/usr/bin/env python3
"""Pre-train the tiny LLaDA of egs/mini as a masked-diffusion LM on the corpus's text.

Usage:
  local/pretrain_llada.py --train_data data/train --dev_data data/dev \\
      --tokenizer_dir exp/pretrained/tokenizer --out_dir exp/pretrained/llada --seed 0

No pretrained LLaDA exists at this size, so egs/mini makes one from the training tasks, without
their audio. Every row becomes the DIFFA chat prompt and its answer
(``diffa.text.template.encode_example``); the answer (eot and eos padding included) is noised and
predicted exactly as in SFT (``diffa.diffusion.noise.sample_t`` / ``mask_answer``,
``diffa.diffusion.loss.sft_loss``), so the model learns the answer formats, the vocabulary, the
sentences' grammar and the prior over answers.

A real instruction-tuned LLM also answers questions about a thing it is told about; DIFFA's
adapters build on that by "telling" it the audio. The tiny LLM learns this skill here: with
probability ``--describe_ratio``, a question row carries its clip's facts as words in the audio
slot (after "This is the audio:"), e.g. "soft noise pink" in random order, so the answer is the
fact the question asks for. Transcripts are never put there: at this scale copying a sentence
in order takes far longer to learn than the recipe's budget.

The initial weights are drawn with std ``--init_std`` (0.08; with LLaDA's 0.02 the tiny model
needs several times more steps before its answers depend on the question).

After training, the dev loss and the dev accuracy of answers decoded from the prompt alone and
from the prompt with the clip's facts in the slot (``diffa.diffusion.sampler.generate``, factor
decoding; ASR rows left out) are printed and written to ``<out_dir>/pretrain_log.txt``.
``<out_dir>`` is an official LLaDA directory (``LLaDAModel.save_pretrained``) written into a
temporary directory that replaces ``<out_dir>`` at the end. The special ids of the config are the
tokenizer's. The run is deterministic for a given ``--seed`` and ``--threads``.
"""
import argparse
import logging
import time

import torch
from tqdm import tqdm

from diffa.data.batching import BucketBatchSampler
from diffa.data.tasks import read_tasks
from diffa.diffusion.loss import sft_loss
from diffa.diffusion.noise import mask_answer, sample_t
from diffa.diffusion.sampler import generate
from diffa.nnet.llada import LLaDAConfig, LLaDAModel
from diffa.text.template import encode_example
from diffa.text.tokenizer import load_tokenizer
from pretrain_utils import clip_properties, learning_rate, publish_model, run_script, setup_run

logger = logging.getLogger("pretrain_llada")


def get_parser():
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train_data", required=True, help="training data dir (tasks.jsonl)")
    parser.add_argument("--dev_data", required=True, help="dev data dir, for the report")
    parser.add_argument("--tokenizer_dir", required=True, help="directory holding spm.model")
    parser.add_argument("--out_dir", required=True, help="where the LLaDA directory goes")
    parser.add_argument("--d_model", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--mlp", type=int, default=384, help="SwiGLU width")
    parser.add_argument("--init_std", type=float, default=0.08,
                        help="std of the random initial weights (0.02, LLaDA's, learns far slower here)")
    parser.add_argument("--epochs", type=float, default=1.0, help="passes over the rows (may be fractional)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--warmup", type=int, default=30, help="warm-up steps")
    parser.add_argument("--describe_ratio", type=float, default=1.0,
                        help="fraction of non-ASR rows with their clip's facts as text in the audio slot")
    parser.add_argument("--n_dev", type=int, default=200, help="dev rows decoded for the report")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--log_interval", type=int, default=25, help="steps between loss lines")
    return parser


def encode_rows(tok, rows, descriptions=None):
    """``(input_ids, prompt_len)`` of every row (prompt, answer, eot; ``encode_example``), with
    ``descriptions[i]`` (if not None) as text in row i's audio slot.

    Example
    -------
    >>> import os, tempfile
    >>> from diffa.text.tokenizer import SentencePieceTokenizer, train_sentencepiece
    >>> tok = SentencePieceTokenizer(train_sentencepiece(
    ...     ["say yes or no"] * 3, os.path.join(tempfile.mkdtemp(), "spm.model"), vocab_size=280))
    >>> (ids, prompt_len), = encode_rows(tok, [{"instruction": "Say it.", "answer": "yes"}], ["yes"])
    >>> tok.decode(ids[prompt_len:]), "audio: yes <audio>" in tok.decode(ids[:prompt_len])
    ('yes', True)
    """
    out = []
    for row, text in zip(rows, descriptions or [None] * len(rows)):
        ids, prompt_len, audio_pos = encode_example(tok, row["instruction"], row["answer"])
        if text is not None:
            heard = tok.encode(" " + text)
            ids, prompt_len = ids[:audio_pos] + heard + ids[audio_pos:], prompt_len + len(heard)
        out.append((ids, prompt_len))
    return out


def describe(rows, facts, ratio, generator):
    """A description of each row's clip, or None: with probability ``ratio``, for rows that are not
    ASR, the clip's facts (the values of its properties, e.g. "soft noise pink") in random order.

    Arguments
    ---------
    rows : list of dict
        Task rows.
    facts : dict of str to dict
        utt -> {property: value} (:func:`pretrain_utils.clip_properties`).
    ratio : float
        Probability that a row gets a description.
    generator : torch.Generator
        Decides which rows and the word order.

    Returns
    -------
    list of str or None

    Example
    -------
    >>> rows = [{"task": "mcq", "utt": "a"}, {"task": "asr", "utt": "a"}]
    >>> describe(rows, {"a": {"kind": "noise"}}, 1.0, torch.Generator().manual_seed(0))
    ['noise', None]
    """
    draws = torch.rand(len(rows), generator=generator).tolist()
    out = []
    for row, u in zip(rows, draws):
        values = list(facts.get(row["utt"], {}).values())
        if row["task"] == "asr" or u >= ratio or not values:
            out.append(None)
            continue
        order = torch.randperm(len(values), generator=generator).tolist()
        out.append(" ".join(values[i] for i in order))
    return out


def collate(examples, pad_id):
    """Right-pad with eos: ids (B, L), answer mask (B, L) (every position past the prompt)."""
    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    for i, (row, _) in enumerate(examples):  # copying variable-length rows into the padded batch
        ids[i, : len(row)] = torch.tensor(row)
    prompt_lens = torch.tensor([p for _, p in examples])
    return ids, torch.arange(width)[None] >= prompt_lens[:, None]


def diffusion_loss(model, ids, answer_mask, mask_id, generator):
    """Masked-diffusion SFT loss of one batch (normalised per batch, as DIFFA's training code)."""
    t = sample_t(ids.shape[0], generator=generator)
    noisy, masked = mask_answer(ids, answer_mask, t, mask_id, generator=generator)
    return sft_loss(model(noisy), ids, masked, t, answer_mask)


def spread(items, n):
    """At most ``n`` items taken at even steps through ``items`` (every kind of row, not the first).

    Example
    -------
    >>> spread(list(range(10)), 3)
    [0, 4, 8]
    """
    return items[:: max(1, -(-len(items) // n))][:n]


@torch.no_grad()
def decode(model, tok, prompts, batch_size, gen_length=16):
    """Answers decoded for token-id prompts (factor decoding, f = 1), cut at the first eot/eos."""
    answers = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        width = max(len(p) for p in chunk)
        prompt_ids = torch.tensor([[tok.pad_id] * (width - len(p)) + p for p in chunk])
        keep = torch.tensor([[False] * (width - len(p)) + [True] * len(p) for p in chunk])
        out = generate(lambda x, attention_mask, rows: model(x, attention_mask=attention_mask), prompt_ids,
                       gen_length=gen_length, block_length=gen_length, steps=gen_length, factor=1.0,
                       mask_id=tok.mask_id, eos_id=tok.eos_id, attention_mask=keep)
        for seq in out.sequences[:, width:].tolist():
            ends = [i for i, t in enumerate(seq) if t in (tok.eot_id, tok.eos_id)]
            answers.append(tok.decode(seq[: ends[0]] if ends else seq).strip())
    return answers


@torch.no_grad()
def evaluate(model, tok, rows, facts, n_decode, batch_size, generator):
    """Dev loss; exact-match accuracy of non-ASR answers decoded from the prompt alone and from
    the prompt with the clip's description in the audio slot."""
    model.eval()
    examples = encode_rows(tok, rows)
    total = 0.0
    for start in range(0, len(examples), batch_size):
        ids, answer_mask = collate(examples[start:start + batch_size], tok.pad_id)
        total += diffusion_loss(model, ids, answer_mask, tok.mask_id, generator).item() * len(ids)
    questions = spread([r for r in rows if r["task"] != "asr"], n_decode)
    report = {"dev_loss": round(total / len(examples), 4)}
    for name, descriptions in (("prompt_only", None), ("described", describe(questions, facts, 1.0, generator))):
        prompts = [ids[:prompt_len] for ids, prompt_len in encode_rows(tok, questions, descriptions)]
        answers = decode(model, tok, prompts, batch_size)
        correct = sum(a == r["answer"] for a, r in zip(answers, questions))
        report[f"dev_acc_{name}"] = round(100.0 * correct / max(1, len(questions)), 2)
    model.train()
    return {**report, "decoded_rows": len(questions)}


def main():
    """Train, evaluate on dev, save (see the module docstring)."""
    args = get_parser().parse_args()
    setup_run(args.seed, args.threads)
    generator = torch.Generator().manual_seed(args.seed)
    tok = load_tokenizer(args.tokenizer_dir)
    rows = read_tasks(f"{args.train_data}/tasks.jsonl")
    dev_rows = read_tasks(f"{args.dev_data}/tasks.jsonl")
    facts, _ = clip_properties(f"{args.train_data}/tasks.jsonl")
    dev_facts, _ = clip_properties(f"{args.dev_data}/tasks.jsonl")
    examples = encode_rows(tok, rows, describe(rows, facts, args.describe_ratio, generator))
    config = LLaDAConfig(
        d_model=args.d_model, n_layers=args.layers, n_heads=args.heads, mlp_hidden_size=args.mlp,
        vocab_size=tok.vocab_size, embedding_size=tok.vocab_size, max_sequence_length=512,
        rope_theta=10000.0, mask_token_id=tok.mask_id, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)
    model = LLaDAModel(config)
    model.init_weights(std=args.init_std, generator=torch.Generator().manual_seed(args.seed))
    model.train()
    logger.info("%d training rows, %d dev; LLaDA %.2fM parameters, vocabulary %d",
                len(examples), len(dev_rows), sum(p.numel() for p in model.parameters()) / 1e6, tok.vocab_size)
    sampler = BucketBatchSampler([len(ids) for ids, _ in examples], max_batch_size=args.batch_size,
                                 num_buckets=4, seed=args.seed)
    epochs = int(-(-args.epochs // 1))
    batches = [b for epoch in range(epochs) for b in sampler.batches(epoch)]
    batches = batches[: max(1, round(args.epochs * len(sampler)))]
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    start, running = time.time(), 0.0
    for step, idx in enumerate(tqdm(batches, desc="llada", unit="step")):
        ids, answer_mask = collate([examples[i] for i in idx], tok.pad_id)
        loss = diffusion_loss(model, ids, answer_mask, tok.mask_id, generator)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, len(batches), args.lr, args.warmup)
        optimizer.step()
        running += loss.item()
        if (step + 1) % args.log_interval == 0 or step + 1 == len(batches):
            logger.info("step %d/%d: loss %.3f", step + 1, len(batches),
                        running / ((step % args.log_interval) + 1))
            running = 0.0
    train_seconds = time.time() - start
    report = evaluate(model, tok, dev_rows, dev_facts, args.n_dev, args.batch_size, generator)
    report.update(steps=len(batches), train_seconds=round(train_seconds, 1))
    lines = [f"{k}: {v}" for k, v in report.items()]
    publish_model(model, args.out_dir, lines)
    logger.info("saved LLaDA to %s", args.out_dir)


if __name__ == "__main__":
    run_script(main, "local/pretrain_llada.py")
