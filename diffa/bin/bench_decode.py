"""Benchmark decoding (not a test): batched vs one at a time, and NFE per decoding rule.

Usage:
  python -m diffa.bin.bench_decode                        # a tiny random model on the CPU
  python -m diffa.bin.bench_decode --shape llada8b --device cuda --n_items 64 --batch_size 32
  python -m diffa.bin.bench_decode --model_dir exp/stage4_vrpo --device cuda --n_items 64 \\
      --batch_size 16 --gen_length 16 --block_length 16 --steps 16

Decodes ``--n_items`` synthetic examples (random log-mel clips of ``--min_seconds`` ..
``--max_seconds`` and questions of different lengths) with each decoding rule at the same
``gen_length``: LLaDA's quota rule with low-confidence and with random remasking, factor-based
parallel decoding (``--factor``) and threshold decoding (``--threshold``). Each rule runs batched
(``--batch_size``, length-sorted, left-padded) over every item and one item at a time over the
first ``--single_items``; the table gives items/s both ways, their ratio, the mean NFE, and
whether batched and one-at-a-time hypotheses agree (random remasking draws its noise per batch,
so it is not expected to).

Without ``--model_dir`` the model is a random DIFFA of the ``--shape`` shape (``tiny``, ``small``
or ``llada8b``: DIFFA-2's Whisper-large-v3 + LLaDA-8B shape, see ``diffa.bin.bench_model``) with
a small SentencePiece tokenizer trained on the spot; its LM head is scaled so that the logits
have standard deviation ``--logit_std`` and greedy proposals have confidences spread over
(0.5, 1) the way a trained model's are, so the adaptive rules have something to adapt to. With
``--model_dir`` the real model and tokenizer are used (the clips are still random noise: for a
benchmark on real data, ``diffa.bin.decode`` prints items/s and mean NFE per test set).
"""

import argparse
import logging
import os
import sys
import tempfile
import time
from typing import List, Optional

import torch

from diffa.bin._cli import entry_point_parser
from diffa.data.collate import collate_prompts
from diffa.data.dataset import Example
from diffa.decode.batching import plan_batches
from diffa.decode.config import DecodeConfig
from diffa.decode.decoder import decode_batch
from diffa.decode.loading import add_model_arguments, load_for_decoding, resolve_audio_dtype, resolve_device
from diffa.bin.bench_model import build_model, model_config
from diffa.text.template import encode_example
from diffa.text.tokenizer import SentencePieceTokenizer, train_sentencepiece

QUESTIONS = ["What is said?", "Transcribe the audio.", "Is the speaker a man or a woman?",
             "Which sound do you hear: a beep, a melody or noise?",
             "Listen to the clip and describe the speaker's pitch, rate and the background noise in detail."]


def random_model(config: str, logit_std: float, device: torch.device, dtype: torch.dtype, seed: int,
                 audio_dtype: torch.dtype):
    """A random DIFFA of a benchmark shape (the encoder and adapters in ``audio_dtype``) and a
    small SentencePiece tokenizer (held in memory; its file is gone).

    Example
    -------
    >>> model, tok = random_model("tiny", 24.0, torch.device("cpu"), torch.float32, seed=0, audio_dtype=torch.float32)
    >>> type(model).__name__, model.encoder.n_mels, model.llm.config.vocab_size, tok.vocab_size
    ('DIFFA', 80, 512, 300)
    >>> head = model.llm.transformer["ff_out"].weight   # rows past the tokenizer's are 0
    >>> round(head[:300].std().item() * 64 ** 0.5), bool(head[300:].eq(0).all())   # logit_std
    (24, True)
    """
    with tempfile.TemporaryDirectory(prefix="bench_decode_") as folder:  # the model is read into memory
        tok = SentencePieceTokenizer(train_sentencepiece(QUESTIONS * 4, os.path.join(folder, "spm.model"), vocab_size=300))
    model = build_model(model_config(config), device, dtype, seed, audio_dtype)
    head = model.llm.transformer["ff_out"].weight
    with torch.no_grad():  # final hidden states have unit RMS: logit std = weight std * sqrt(d_model)
        head.normal_(0.0, logit_std / head.shape[1] ** 0.5, generator=torch.Generator(device).manual_seed(seed))
        # ids past the tokenizer's get logit 0, far below the top of hundreds of N(0, logit_std) draws,
        # so they are never proposed: the hypotheses are text the tokenizer spells (ids it cannot spell
        # would decode to "", and every rule's hypotheses would agree trivially)
        head[tok.vocab_size:] = 0.0
    return model, tok


def synthetic_examples(model, tokenizer, n: int, min_seconds: float, max_seconds: float, seed: int) -> List[Example]:
    """``n`` examples: random log-mel clips and the template around questions of several lengths.

    Example
    -------
    >>> model, tok = random_model("tiny", 24.0, torch.device("cpu"), torch.float32, 0, torch.float32)
    >>> examples = synthetic_examples(model, tok, 3, min_seconds=0.5, max_seconds=1.0, seed=0)
    >>> [ex.id for ex in examples], examples[0].row
    (['item0000', 'item0001', 'item0002'], {'task': 'open_qa'})
    >>> [(50 <= ex.feats.shape[0] <= 100, ex.feats.shape[1], ex.prompt_len == len(ex.input_ids)) for ex in examples]
    [(True, 80, True), (True, 80, True), (True, 80, True)]
    """
    g = torch.Generator().manual_seed(seed)
    examples = []
    for i in range(n):
        frames = int(100 * (min_seconds + (max_seconds - min_seconds) * torch.rand(1, generator=g).item()))
        ids, prompt_len, audio_pos = encode_example(tokenizer, QUESTIONS[i % len(QUESTIONS)])
        feats = torch.randn(max(frames, 1), model.encoder.n_mels, generator=g)
        examples.append(Example(f"item{i:04d}", feats, torch.tensor(ids), prompt_len, audio_pos, {"task": "open_qa"}))
    return examples


def run(model, tokenizer, examples: List[Example], batch_size: int, config: DecodeConfig, seed: int):
    """Decode ``examples`` in length-sorted batches: (hypotheses by id, NFE by id, seconds).

    Example
    -------
    >>> model, tok = random_model("tiny", 24.0, torch.device("cpu"), torch.float32, 0, torch.float32)
    >>> examples = synthetic_examples(model, tok, 3, 0.5, 1.0, seed=0)
    >>> hyps, nfe, seconds = run(model, tok, examples, batch_size=2,
    ...                          config=DecodeConfig(gen_length=4, block_length=4, steps=4), seed=0)
    >>> sorted(hyps), all(hyps.values()), [0 < n <= 4 for n in nfe.values()], seconds > 0
    (['item0000', 'item0001', 'item0002'], True, [True, True, True], True)
    """
    costs = [len(ex.input_ids) + ex.feats.shape[0] // 8 for ex in examples]
    plan = plan_batches(["open_qa"] * len(examples), costs, batch_size)
    sync = torch.cuda.synchronize if model.llm.device.type == "cuda" else (lambda: None)
    hyps, nfe = {}, {}
    sync()
    start = time.perf_counter()
    for number, batch in enumerate(plan):
        chosen = [examples[i] for i in batch]
        generator = torch.Generator(model.llm.device).manual_seed(seed + number)
        texts, counts = decode_batch(model, tokenizer, collate_prompts(chosen, tokenizer.pad_id),
                                     config.sampling(None), config.stop_at_eos, generator)
        hyps.update((ex.id, t) for ex, t in zip(chosen, texts))
        nfe.update((ex.id, c) for ex, c in zip(chosen, counts))
    sync()
    return hyps, nfe, time.perf_counter() - start


def get_parser() -> argparse.ArgumentParser:
    """The command-line parser.

    Example
    -------
    >>> get_parser().parse_args([]).gen_length
    32
    """
    parser = entry_point_parser("diffa.bin.bench_decode", __doc__)
    parser.add_argument("--model_dir", help="a DIFFA model directory (default: a random model of --shape)")
    parser.add_argument("--shape", default="tiny", choices=("tiny", "small", "llada8b"), help="random model shape")
    add_model_arguments(parser)
    parser.add_argument("--n_items", type=int, default=32, help="examples decoded batched")
    parser.add_argument("--single_items", type=int, default=16, help="of which decoded one at a time too")
    parser.add_argument("--batch_size", type=int, default=16, help="examples per batch of the batched way")
    parser.add_argument("--gen_length", type=int, default=32, help="answer positions")
    parser.add_argument("--block_length", type=int, default=32, help="positions per block")
    parser.add_argument("--steps", type=int, default=32, help="quota rule steps")
    parser.add_argument("--factor", type=float, default=1.0, help="factor of the factor rule")
    parser.add_argument("--threshold", type=float, default=0.9, help="threshold of the threshold rule")
    parser.add_argument("--min_seconds", type=float, default=1.0, help="shortest random clip")
    parser.add_argument("--max_seconds", type=float, default=10.0, help="longest random clip")
    parser.add_argument("--logit_std", type=float, default=24.0, help="random model: std of its logits")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the examples, the random model and the sampling")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the benchmark (module docstring); returns the exit status.

    Example
    -------
    The tiny random model on two half-second clips, answers of 2 positions, on one CPU thread:

    >>> threads = torch.get_num_threads()
    >>> main(["--n_items", "2", "--single_items", "1", "--batch_size", "2", "--gen_length", "2", "--block_length", "2",
    ...       "--steps", "2", "--min_seconds", "0.5", "--max_seconds", "0.5", "--device", "cpu", "--threads", "1"])
    random DIFFA 'tiny' (LLM d_model 64, 2 layers, logit std 24; tokenizer vocab 300) on cpu float32 (encoder and
    adapters float32); 2 items (0.5-0.5 s), gen_length 2, block_length 2, quota steps 2, batch_size 2
    rule                   batched it/s single it/s speed-up  mean NFE  same hyps
    quota low-confidence ... 2.0 1/1
    quota random ...
    factor 1 ...
    threshold 0.9 ...
    0
    >>> torch.set_num_threads(threads)
    >>> import contextlib
    >>> with contextlib.redirect_stderr(sys.stdout):  # bad options: one ERROR line on stderr, status 1
    ...     main(["--n_items", "2", "--single_items", "3"])
    ERROR: need 1 <= --single_items <= --n_items
    1
    """
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not 1 <= args.single_items <= args.n_items:
        print("ERROR: need 1 <= --single_items <= --n_items", file=sys.stderr)
        return 1
    if args.tokenizer_dir and not args.model_dir:
        print("ERROR: --tokenizer_dir goes with --model_dir (the random model makes its own tokenizer)", file=sys.stderr)
        return 1
    common = dict(gen_length=args.gen_length, block_length=args.block_length, steps=args.steps)
    try:
        rules = [("quota low-confidence", DecodeConfig(**common)),
                 ("quota random", DecodeConfig(**common, remasking="random")),
                 (f"factor {args.factor:g}", DecodeConfig(**common, factor=args.factor)),
                 (f"threshold {args.threshold:g}", DecodeConfig(**common, threshold=args.threshold))]
        if args.model_dir:
            model, tokenizer = load_for_decoding(args.model_dir, args.tokenizer_dir, args.device, args.dtype, args.audio_dtype)
            name = args.model_dir
        else:
            device, dtype = resolve_device(args.device, args.dtype)
            model, tokenizer = random_model(args.shape, args.logit_std, device, dtype, args.seed,
                                            resolve_audio_dtype(args.audio_dtype, dtype))
            llm = model.llm.config
            name = (f"random DIFFA '{args.shape}' (LLM d_model {llm.d_model}, {llm.n_layers} layers, logit std "
                    f"{args.logit_std:g}; tokenizer vocab {tokenizer.vocab_size})")
    except (ValueError, OSError) as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    examples = synthetic_examples(model, tokenizer, args.n_items, args.min_seconds, args.max_seconds, args.seed)
    audio_dtype = next(model.encoder.parameters()).dtype
    print(f"{name} on {model.llm.device} {str(model.llm.dtype).replace('torch.', '')} (encoder and adapters "
          f"{str(audio_dtype).replace('torch.', '')}); {args.n_items} items "
          f"({args.min_seconds:g}-{args.max_seconds:g} s), gen_length {args.gen_length}, block_length "
          f"{args.block_length}, quota steps {args.steps}, batch_size {args.batch_size}")
    print(f"{'rule':<22}{'batched it/s':>13}{'single it/s':>12}{'speed-up':>9}{'mean NFE':>10}{'same hyps':>11}")
    run(model, tokenizer, examples[: args.batch_size], args.batch_size, rules[0][1], args.seed)  # warm-up
    for label, config in rules:
        hyps, nfe, seconds = run(model, tokenizer, examples, args.batch_size, config, args.seed)
        single = examples[: args.single_items]
        one_hyps, _, one_seconds = run(model, tokenizer, single, 1, config, args.seed)
        batched_rate, single_rate = len(examples) / seconds, len(single) / one_seconds
        same = sum(hyps[ex.id] == one_hyps[ex.id] for ex in single)
        print(f"{label:<22}{batched_rate:>13.2f}{single_rate:>12.2f}{batched_rate / single_rate:>8.1f}x"
              f"{sum(nfe.values()) / len(nfe):>10.1f}{f'{same}/{len(single)}':>11}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
