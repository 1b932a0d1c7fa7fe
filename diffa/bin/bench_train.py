"""Examples per second of our SFT training step against the authors' way of training.

Usage:
  python -m diffa.bin.bench_train                                  # tiny model, CPU
  python -m diffa.bin.bench_train --shape small --batch_size 8 --repeats 5
  python -m diffa.bin.bench_train --shape llada8b --device cuda --batch_size 4

Both steps train the same DIFFA (random weights of the chosen shape, ``diffa.bin.bench_model``;
curriculum stage 3: both adapters and LoRA train, AdamW) on the same batch with the same
corrupted answers (clips of ``--min_seconds``..``--max_seconds``, prompts of
``--min_text``..``--max_text`` tokens, answers of ``--min_answer``..``--max_answer`` tokens
right-padded with eos, which count as answer tokens):

  ours      variable-length Whisper input, Q-Former and LLM with padding masks, the audio
            spliced in by two scatters, logits only at the masked positions
            (``diffa.train.sft.MaskedPredictor`` + ``masked_sft_loss``)
  authors   Whisper input padded to 30 s, an unmasked Q-Former, the audio spliced per example in
            a Python loop with no padding mask, and logits over every text position before the
            loss (``diffa.bin.bench_model.loop_splice_forward`` + ``sft_loss``)

It prints milliseconds per step (forward, backward, optimizer step; the median of ``--repeats``
after ``--warmup`` untimed steps), examples per second and peak memory of each, and the speed
ratio ours / authors.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Callable, Dict, List, Optional

import torch

from diffa.bin import bench_model
from diffa.bin.bench_model import authors_behaviour, build_model, loop_splice_forward, measure, model_config, random_batch
from diffa.decode.loading import resolve_device
from diffa.diffusion.loss import sft_loss
from diffa.model.diffa import DIFFA
from diffa.train.keyed_noise import corrupt
from diffa.train.sft import MaskedPredictor, masked_sft_loss
from diffa.train.stages import prepare_stage


def training_batch(model: DIFFA, args: argparse.Namespace, generator: torch.Generator) -> Dict[str, torch.Tensor]:
    """A random SFT batch: ``[prompt ; answer ; eos padding]`` rows, answers corrupted once.

    Example
    -------
    >>> from diffa.model.diffa import tiny_config
    >>> args = get_parser().parse_args(["--batch_size", "3", "--max_seconds", "3"])
    >>> b = training_batch(DIFFA(tiny_config(n_mels=80)), args, torch.Generator().manual_seed(0))
    >>> b["noisy"].shape == b["input_ids"].shape, bool((b["masked"] <= b["answer_mask"]).all())
    (True, True)
    """
    batch = random_batch(model, args, generator)
    device = batch["input_ids"].device
    prompt_lens = batch["text_lens"]
    answer_lens = torch.randint(args.min_answer, args.max_answer + 1, prompt_lens.shape, generator=generator).to(device)
    width = int((prompt_lens + answer_lens).max())
    pad = model.llm.config.pad_token_id
    ids = torch.randint(0, model.llm.config.vocab_size - 2, (len(prompt_lens), width), generator=generator).to(device)
    positions = torch.arange(width, device=device)[None]
    ids = ids.masked_fill(positions >= (prompt_lens + answer_lens)[:, None], pad)
    answer_mask = positions >= prompt_lens[:, None]
    keys = torch.arange(len(prompt_lens), device=device)
    noisy, masked, t = corrupt(ids, answer_mask, keys, model.llm.config.mask_token_id, seed=args.seed, epoch=1)
    full = torch.full_like(prompt_lens, width)  # training rows have no padding: eos fills the answers
    del batch["attention_mask"]  # the prompts' only: the rows are whole (text_lens) from here on
    return {**batch, "input_ids": ids, "noisy": noisy, "masked": masked, "t": t, "answer_mask": answer_mask, "text_lens": full}


def ours_loss(model: DIFFA, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
    """Our SFT loss: logits at the masked positions only, padding masked everywhere.

    Example
    -------
    >>> from diffa.model.diffa import tiny_config
    >>> model = DIFFA(tiny_config()).eval()
    >>> args = get_parser().parse_args(["--batch_size", "1", "--min_seconds", "0.5", "--max_seconds", "1",
    ...                                 "--min_text", "8", "--max_text", "12", "--max_answer", "8"])
    >>> batch = training_batch(model, args, torch.Generator().manual_seed(0))
    >>> loss = ours_loss(model, batch)
    >>> loss.shape, loss.requires_grad, torch.allclose(loss, authors_loss(model, batch))  # one clip: no padding
    (torch.Size([]), True, True)
    """
    logits = MaskedPredictor(model)(batch["feats"], batch["feat_lens"], batch["noisy"], batch["audio_pos"], batch["masked"])
    return masked_sft_loss(logits, batch["input_ids"], batch["masked"], batch["t"], batch["answer_mask"]).loss


def authors_loss(model: DIFFA, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
    """The authors' SFT loss: per-example splice, no padding mask, logits everywhere.

    Example
    -------
    >>> from diffa.model.diffa import tiny_config
    >>> _ = torch.manual_seed(0); model = DIFFA(tiny_config()).eval()
    >>> batch = training_batch(model, get_parser().parse_args(["--batch_size", "2", "--min_seconds", "0.2",
    ...     "--max_seconds", "2", "--min_text", "6", "--max_text", "12", "--max_answer", "8"]), torch.Generator().manual_seed(0))
    >>> batch["feat_lens"].tolist(), torch.allclose(authors_loss(model, batch), ours_loss(model, batch))
    ([109, 158], False)

    The example with the shorter clip is right-padded in the LLM, and nothing masks the padding.
    """
    logits = torch.stack(loop_splice_forward(model, {**batch, "input_ids": batch["noisy"]}))
    return sft_loss(logits, batch["input_ids"], batch["masked"], batch["t"], batch["answer_mask"])


def training_step(model: DIFFA, loss_fn: Callable, batch, optimizer, autocast) -> Callable[[], None]:
    """One forward + backward + AdamW step of ``loss_fn``, as a closure.

    Example
    -------
    >>> from diffa.model.diffa import tiny_config
    >>> model = DIFFA(tiny_config(n_mels=80))
    >>> _ = prepare_stage(model, "sft")
    >>> batch = training_batch(model, get_parser().parse_args(["--batch_size", "2", "--max_seconds", "2"]),
    ...                        torch.Generator().manual_seed(0))
    >>> optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    >>> before = model.semantic.linear2.weight.clone()
    >>> training_step(model, ours_loss, batch, optimizer, contextlib.nullcontext)()
    >>> bool((model.semantic.linear2.weight != before).any())
    True
    """

    def step() -> None:
        with autocast():
            loss = loss_fn(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def get_parser() -> argparse.ArgumentParser:
    """The command-line parser: ``diffa.bin.bench_model``'s options plus answers and warm-up.

    Example
    -------
    >>> args = get_parser().parse_args([])
    >>> args.max_answer, args.max_seconds, args.shape
    (32, 15.0, 'tiny')
    """
    parser = bench_model.get_parser()
    parser.prog, parser.description = "python -m diffa.bin.bench_train", __doc__
    parser.set_defaults(max_seconds=15.0, max_text=80)
    parser.add_argument("--min_answer", type=int, default=4, help="shortest answer (tokens)")
    parser.add_argument("--max_answer", type=int, default=32, help="longest answer (tokens)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per way before timing")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the benchmark (module docstring); returns the exit status.

    Example
    -------
    The tiny shape, one 0.1-s clip, a 2-token prompt and a 2-token answer, one timed step per way
    and no warm-up, on one CPU thread:

    >>> threads = torch.get_num_threads()
    >>> main(["--batch_size", "1", "--min_seconds", "0.1", "--max_seconds", "0.1", "--min_text", "2", "--max_text", "2",
    ...       "--min_answer", "2", "--max_answer", "2", "--repeats", "1", "--warmup", "0", "--device", "cpu",
    ...       "--threads", "1"])
    shape tiny on cpu: 0.02M of 0.2M parameters train; cpu float32
    batch 1: audio 0.1-0.1 s, text 4 tokens, ... masked answer tokens
    way          ms/step  examples/s  peak MiB
    ours ...
    authors ...
    examples/s ours / authors: ...x
    0
    >>> torch.set_num_threads(threads)
    >>> with contextlib.redirect_stderr(sys.stdout):  # bad options: one ERROR line on stderr, status 1
    ...     main(["--min_answer", "0"])
    ERROR: need 0 < min_seconds <= max_seconds <= 30, 2 <= min_text <= max_text, 1 <= min_answer <= max_answer
    and batch_size >= 1
    1
    """
    args = get_parser().parse_args(argv)
    if not (0 < args.min_seconds <= args.max_seconds <= 30 and 2 <= args.min_text <= args.max_text
            and 1 <= args.min_answer <= args.max_answer and args.batch_size >= 1):
        print("ERROR: need 0 < min_seconds <= max_seconds <= 30, 2 <= min_text <= max_text, "
              "1 <= min_answer <= max_answer and batch_size >= 1", file=sys.stderr)
        return 1
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = resolve_device(args.device, args.dtype)
    torch.manual_seed(args.seed)
    model = build_model(model_config(args.shape), device, dtype, args.seed)
    summary = prepare_stage(model, "sft")
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    batch = training_batch(model, args, torch.Generator().manual_seed(args.seed))
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype != torch.float32 else contextlib.nullcontext
    print(f"shape {args.shape} on {device}: {summary.trainable / 1e6:.2f}M of {summary.total / 1e6:.1f}M parameters train; "
          f"{device} {str(dtype).replace('torch.', '')}")
    print(f"batch {args.batch_size}: audio {batch['feat_lens'].min().item() / 100:.1f}-{batch['feat_lens'].max().item() / 100:.1f} s, "
          f"text {batch['input_ids'].shape[1]} tokens, {int(batch['masked'].sum())} masked answer tokens")
    results = {}
    for name, loss_fn, authors in (("ours", ours_loss, False), ("authors", authors_loss, True)):
        with authors_behaviour(model, authors):
            step = training_step(model, loss_fn, batch, optimizer, autocast)
            for _ in range(args.warmup):  # allocator, cuBLAS and autocast caches settle first
                step()
            results[name] = measure(step, device, args.repeats)
    print(f"{'way':<10}{'ms/step':>10}{'examples/s':>12}{'peak MiB':>10}")
    for name, r in results.items():
        print(f"{name:<10}{r['ms']:>10.1f}{args.batch_size / r['ms'] * 1000:>12.2f}{r['peak'] / 2**20:>10.1f}")
    print(f"examples/s ours / authors: {results['authors']['ms'] / results['ours']['ms']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
