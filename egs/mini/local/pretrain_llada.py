#!/usr/bin/env python3
"""Pre-train the tiny LLaDA of egs/mini as a masked-diffusion LM on the corpus's text.

Usage:
  local/pretrain_llada.py --train_data data/train --dev_data data/dev \\
      --tokenizer exp/pretrained/tokenizer --out_dir exp/pretrained/llada --seed 0

No pretrained LLaDA exists at this size, so egs/mini makes one from the training tasks, without
their audio. Every row becomes the DIFFA chat prompt and its answer
(``diffa.text.template.encode_example``); the answer (eot and eos padding included) is noised and
predicted exactly as in SFT (``diffa.diffusion.noise.sample_t`` / ``mask_answer``,
``diffa.diffusion.loss.sft_loss``), so the model learns the answer formats, the vocabulary and the
prior over answers. A real instruction-tuned LLM also brings along the skill of repeating what
it is shown, which DIFFA's ASR builds on; to teach it, a fraction ``--transcript_ratio`` of the ASR
rows carry their transcript as text where the audio will be spliced in (after "This is the
audio:"), and ``--copy_rows`` more such rows are made of random word strings drawn from the
training transcripts' words, so that copying does not depend on the sentences seen.

After training, the dev loss, the dev accuracy of answers decoded from the prompt alone (ASR rows
excluded: without audio they can only be guessed) and the dev WER of copying each ASR row's
transcript from the audio slot (``diffa.diffusion.sampler.generate``) are printed and written to
``<out_dir>/pretrain_log.txt``. ``<out_dir>`` is an official
LLaDA directory (``LLaDAModel.save_pretrained``) written into a temporary directory that replaces
``<out_dir>`` at the end. The special ids of the config are the tokenizer's. The run is
deterministic for a given ``--seed`` and ``--threads``.
"""
import argparse
import logging
import sys
import time

import torch
from tqdm import tqdm

from diffa.data.batching import BucketBatchSampler
from diffa.data.tasks import read_tasks
from diffa.diffusion.loss import sft_loss
from diffa.diffusion.noise import mask_answer, sample_t
from diffa.diffusion.sampler import generate
from diffa.nnet.llada import LLaDAConfig, LLaDAModel
from diffa.scoring.wer import score_wer
from diffa.text.template import encode_example
from diffa.text.tokenizer import load_tokenizer
from pretrain_utils import learning_rate, publish_dir, setup_run

logger = logging.getLogger("pretrain_llada")


def get_parser():
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train_data", required=True, help="training data dir (tasks.jsonl)")
    parser.add_argument("--dev_data", required=True, help="dev data dir, for the report")
    parser.add_argument("--tokenizer", required=True, help="directory holding spm.model")
    parser.add_argument("--out_dir", required=True, help="where the LLaDA directory goes")
    parser.add_argument("--d_model", type=int, default=192)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--mlp", type=int, default=512, help="SwiGLU width")
    parser.add_argument("--epochs", type=float, default=1.0, help="passes over the rows (may be fractional)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=30, help="warm-up steps")
    parser.add_argument("--transcript_ratio", type=float, default=0.0,
                        help="fraction of ASR rows that carry their transcript in the audio slot")
    parser.add_argument("--copy_rows", type=int, default=0,
                        help="extra rows copying random word strings from the audio slot")
    parser.add_argument("--n_dev", type=int, default=200, help="dev rows decoded for the report")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--log_interval", type=int, default=25, help="steps between loss lines")
    return parser


def spliced_transcript(tok, row):
    """``(input_ids, prompt_len)`` of an ASR row whose transcript stands in the audio slot.

    Arguments
    ---------
    tok : tokenizer
        A :mod:`diffa.text.tokenizer` tokenizer.
    row : dict
        A task row with ``instruction`` and ``answer``.

    Returns
    -------
    tuple of (list of int, int)
    """
    ids, prompt_len, audio_pos = encode_example(tok, row["instruction"], row["answer"])
    heard = tok.encode(" " + row["answer"])
    return ids[:audio_pos] + heard + ids[audio_pos:], prompt_len + len(heard)


def random_copy_rows(rows, n, generator):
    """``n`` ASR-like rows whose answers are random strings of 3-6 words of the transcripts.

    Arguments
    ---------
    rows : list of dict
        Task rows; their ASR rows give the instructions and the words.
    n : int
        How many rows to make.
    generator : torch.Generator
        Decides the words, lengths and instructions.

    Returns
    -------
    list of dict
        Rows with ``task``, ``instruction`` and ``answer``.

    Example
    -------
    >>> rows = [{"task": "asr", "instruction": "Say it.", "answer": "a b c"}]
    >>> new = random_copy_rows(rows, 2, torch.Generator().manual_seed(0))
    >>> len(new), all(set(r["answer"].split()) <= {"a", "b", "c"} for r in new)
    (2, True)
    """
    asr = [row for row in rows if row["task"] == "asr"]
    if not asr:
        raise ValueError("no ASR rows to draw instructions and words from")
    words = sorted({w for row in asr for w in row["answer"].split()})
    picks = torch.randint(len(words), (n, 6), generator=generator).tolist()
    sizes = torch.randint(3, 7, (n,), generator=generator).tolist()
    which = torch.randint(len(asr), (n,), generator=generator).tolist()
    return [{"task": "asr", "instruction": asr[w]["instruction"],
             "answer": " ".join(words[i] for i in pick[:size])}
            for pick, size, w in zip(picks, sizes, which)]


def encode_rows(tok, rows, transcript_ratio, generator):
    """``(input_ids, prompt_len)`` of every row; ASR rows carry their transcript in the audio
    slot with probability ``transcript_ratio`` (:func:`spliced_transcript`)."""
    draws = torch.rand(len(rows), generator=generator).tolist()
    out = []
    for row, u in zip(rows, draws):
        if row["task"] == "asr" and u < transcript_ratio:
            out.append(spliced_transcript(tok, row))
        else:
            ids, prompt_len, _ = encode_example(tok, row["instruction"], row["answer"])
            out.append((ids, prompt_len))
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
    """Masked-diffusion SFT loss of one batch (SPEC §2, batch normalisation)."""
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
def evaluate(model, tok, rows, n_decode, batch_size, generator):
    """Dev loss; accuracy of non-ASR answers decoded from the prompt alone; WER of ASR answers
    copied from a transcript in the audio slot."""
    model.eval()
    examples = encode_rows(tok, rows, 0.0, generator)
    total = 0.0
    for start in range(0, len(examples), batch_size):
        ids, answer_mask = collate(examples[start:start + batch_size], tok.pad_id)
        total += diffusion_loss(model, ids, answer_mask, tok.mask_id, generator).item() * len(ids)
    questions = spread([r for r in rows if r["task"] != "asr"], n_decode)
    answers = decode(model, tok, [encode_example(tok, r["instruction"]).input_ids for r in questions], batch_size)
    asr = spread([r for r in rows if r["task"] == "asr"], n_decode)
    copies = decode(model, tok, [ids[:prompt_len] for ids, prompt_len in (spliced_transcript(tok, r) for r in asr)],
                    batch_size)
    wer = score_wer({r["id"]: r["answer"] for r in asr}, {r["id"]: c for r, c in zip(asr, copies)}, "wenet")
    model.train()
    return {"dev_loss": round(total / len(examples), 4),
            "dev_answer_acc": round(100.0 * sum(a == r["answer"] for a, r in zip(answers, questions))
                                    / max(1, len(questions)), 2),
            "dev_copy_wer": round(wer.counts.rate, 2), "decoded_rows": len(questions) + len(asr)}


def main():
    """Train, evaluate on dev, save (see the module docstring)."""
    args = get_parser().parse_args()
    setup_run(args.seed, args.threads)
    generator = torch.Generator().manual_seed(args.seed)
    tok = load_tokenizer(args.tokenizer)
    rows = read_tasks(f"{args.train_data}/tasks.jsonl")
    dev_rows = read_tasks(f"{args.dev_data}/tasks.jsonl")
    examples = encode_rows(tok, rows + random_copy_rows(rows, args.copy_rows, generator),
                           args.transcript_ratio, generator)
    config = LLaDAConfig(
        d_model=args.d_model, n_layers=args.layers, n_heads=args.heads, mlp_hidden_size=args.mlp,
        vocab_size=tok.vocab_size, embedding_size=tok.vocab_size, max_sequence_length=512,
        rope_theta=10000.0, mask_token_id=tok.mask_id, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)
    model = LLaDAModel(config)
    model.init_weights(generator=torch.Generator().manual_seed(args.seed))
    model.train()
    logger.info("%d training rows (%d of them random copies), %d dev; LLaDA %.2fM parameters, vocabulary %d",
                len(examples), args.copy_rows, len(dev_rows), sum(p.numel() for p in model.parameters()) / 1e6, tok.vocab_size)
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
    report = evaluate(model, tok, dev_rows, args.n_dev, args.batch_size, generator)
    report.update(steps=len(batches), train_seconds=round(train_seconds, 1))
    lines = [f"{k}: {v}" for k, v in report.items()]
    print("\n".join(lines))
    with publish_dir(args.out_dir) as tmp:
        model.save_pretrained(tmp)
        with open(f"{tmp}/pretrain_log.txt", "w", encoding="utf-8") as f:
            f.write(" ".join(sys.argv) + "\n" + "\n".join(lines) + "\n")
    logger.info("saved LLaDA to %s", args.out_dir)


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"local/pretrain_llada.py: error: {err}")
