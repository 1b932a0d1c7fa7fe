"""Benchmark DIFFA's batched forward against the authors' per-sample splice (not a test).

Usage:
  python -m diffa.bin.bench_model --shape tiny
  python -m diffa.bin.bench_model --shape small --batch_size 8 --repeats 5
  python -m diffa.bin.bench_model --shape llada8b --device cuda --dtype bfloat16 --batch_size 8

Builds a DIFFA of the chosen shape with random weights (on the meta device first, then
materialised directly on ``--device`` in ``--dtype``: the LLaDA-8B / Whisper-large-v3 shape needs
about 17 GB in bfloat16) and a random batch of clips of ``--min_seconds``..``--max_seconds`` and
prompts of ``--min_text``..``--max_text`` tokens, then times one forward pass (logits over the
text positions) in four ways:

  ours            variable-length audio, the audio spliced in by two scatters for the whole batch,
                  a key-padding mask in the LLM (``DIFFA.forward``)
  loop splice     the same encoder output, spliced per example in a Python loop (concatenate,
                  right-pad) and run without a padding mask, as the authors'
                  ``insert_audio_embedding`` does
  authors         the loop splice plus Whisper input padded to 30 s and a Q-Former that attends
                  to every frame (the released checkpoints' behaviour)
  one at a time   ``DIFFA.forward`` on each example alone

and prints, per way: milliseconds per batch, useful tokens per second (real text + real audio
positions of the batch, the same count for every way), LLM positions computed, and peak memory
(``torch.cuda.max_memory_allocated`` above the weights on GPU; on CPU the peak of glibc's
malloc'ed bytes in use above the weights, sampled every millisecond); then the speed ratios and how far each way's
logits are from one-at-a-time (ours should agree to rounding error; the unmasked ways do not).
"""

import argparse
import contextlib
import ctypes
import logging
import sys
import threading
import time
from typing import Callable, Dict, List, Optional

import torch
from transformers import WhisperConfig

from diffa.bin._cli import entry_point_parser
from diffa.decode.loading import DTYPES, resolve_device
from diffa.model.config import OFFICIAL_TAPS, DIFFAConfig
from diffa.model.diffa import DIFFA, tiny_config
from diffa.nnet.llada import LLaDAConfig


def _whisper(n_mels: int, d_model: int, layers: int, heads: int, ffn: int) -> dict:
    return WhisperConfig(num_mel_bins=n_mels, d_model=d_model, encoder_layers=layers, encoder_attention_heads=heads,
                         encoder_ffn_dim=ffn, decoder_layers=1, decoder_attention_heads=heads, decoder_ffn_dim=ffn,
                         max_source_positions=1500).to_dict()


def model_config(name: str) -> DIFFAConfig:
    """The DIFFA shape called ``name``: ``tiny``, ``small`` or ``llada8b``.

    ``small`` is a Whisper-tiny-shaped encoder with a 8-layer, 512-wide LLaDA (32k vocabulary);
    ``llada8b`` is Whisper-large-v3's encoder with LLaDA-8B-Instruct: DIFFA-2's shape.

    Example
    -------
    >>> model_config("llada8b").llm["mlp_hidden_size"], model_config("llada8b").taps
    (12288, [3, 7, 11, 15, 19, 23, 27, 31])
    """
    if name == "tiny":
        return tiny_config(vocab=512, d_llm=64, n_mels=80)
    if name == "small":
        llm = LLaDAConfig(d_model=512, n_layers=8, n_heads=8, n_kv_heads=8, mlp_hidden_size=1536, vocab_size=32000,
                          embedding_size=32000, mask_token_id=31999, eos_token_id=31998, pad_token_id=31998)
        return DIFFAConfig(encoder=_whisper(80, 384, 4, 6, 1536), llm=llm.to_dict(), taps=OFFICIAL_TAPS[(4, 384)],
                           qformer_ffn=1536)
    if name == "llada8b":
        llm = LLaDAConfig(d_model=4096, n_layers=32, n_heads=32, n_kv_heads=32, mlp_hidden_size=12288,
                          vocab_size=126464, embedding_size=126464)
        return DIFFAConfig(encoder=_whisper(128, 1280, 32, 20, 5120), llm=llm.to_dict(),
                           taps=OFFICIAL_TAPS[(32, 1280)], qformer_ffn=3072)
    raise ValueError(f"unknown --shape {name!r}; use tiny, small or llada8b")


@torch.no_grad()
def build_model(config: DIFFAConfig, device: torch.device, dtype: torch.dtype, seed: int = 0,
                audio_dtype: Optional[torch.dtype] = None) -> DIFFA:
    """A random DIFFA materialised directly on ``device`` in ``dtype`` (no full-size CPU copy);
    the encoder and the adapters in ``audio_dtype`` when given (:meth:`DIFFA.set_dtypes`).

    Example
    -------
    >>> m = build_model(tiny_config(), torch.device("cpu"), torch.float32)
    >>> m.llm.dtype, bool(m.llm.get_input_embeddings().weight.std() > 0)
    (torch.float32, True)
    >>> m = build_model(tiny_config(), torch.device("cpu"), torch.bfloat16, audio_dtype=torch.float32)
    >>> m.llm.dtype, m.semantic.conv1.weight.dtype
    (torch.bfloat16, torch.float32)
    """
    with torch.device("meta"):
        model = DIFFA(config)
    model = model.set_dtypes(dtype, audio_dtype).to_empty(device=device).eval().requires_grad_(False)
    generator = torch.Generator(device).manual_seed(seed)
    for name, param in model.named_parameters():
        if param.dim() >= 2:
            param.normal_(0.0, 0.02, generator=generator)
        else:  # biases 0, norm scales 1
            param.fill_(0.0 if name.endswith("bias") else 1.0)
    return model


def random_batch(model: DIFFA, args: argparse.Namespace, generator: torch.Generator) -> Dict[str, torch.Tensor]:
    """Random log-mel clips and right-padded prompts (with the audio position inside the text).

    Example
    -------
    >>> model = build_model(tiny_config(), torch.device("cpu"), torch.float32)
    >>> args = argparse.Namespace(batch_size=3, min_seconds=0.2, max_seconds=0.6, min_text=3, max_text=8)
    >>> batch = random_batch(model, args, torch.Generator().manual_seed(0))
    >>> {k: tuple(v.shape) for k, v in batch.items()}
    {'feats': (3, 50, 16), 'feat_lens': (3,), 'input_ids': (3, 6), 'attention_mask': (3, 6),
     'audio_pos': (3,), 'text_lens': (3,)}
    >>> batch["feat_lens"].tolist(), batch["text_lens"].tolist(), batch["audio_pos"].tolist()
    ([39, 50, 23], [3, 4, 6], [2, 1, 1])
    """
    device = model.llm.device
    B = args.batch_size
    seconds = args.min_seconds + (args.max_seconds - args.min_seconds) * torch.rand(B, generator=generator)
    feat_lens = (seconds * 100).long().clamp(min=1)
    text_lens = torch.randint(args.min_text, args.max_text + 1, (B,), generator=generator)
    feats = torch.randn(B, int(feat_lens.max()), model.encoder.n_mels, generator=generator)
    ids = torch.randint(0, model.llm.config.vocab_size - 2, (B, int(text_lens.max())), generator=generator)
    mask = torch.arange(ids.shape[1])[None] < text_lens[:, None]
    audio_pos = torch.randint(1, args.min_text, (B,), generator=generator)
    batch = {"feats": feats, "feat_lens": feat_lens, "input_ids": ids, "attention_mask": mask,
             "audio_pos": audio_pos, "text_lens": text_lens}
    return {k: v.to(device) for k, v in batch.items()}


@contextlib.contextmanager
def authors_behaviour(model: DIFFA, on: bool):
    """Temporarily give the model the released checkpoints' switches (30 s input, unmasked Q-Former).

    Example
    -------
    >>> model = DIFFA(tiny_config())
    >>> with authors_behaviour(model, True):
    ...     model.encoder.pad_to_30s, model.config.qformer_padding_mask
    (True, False)
    >>> model.encoder.pad_to_30s, model.config.qformer_padding_mask       # restored on exit
    (False, True)
    """
    saved = model.encoder.pad_to_30s, model.config.qformer_padding_mask
    if on:
        model.encoder.pad_to_30s, model.config.qformer_padding_mask = True, False
    try:
        yield
    finally:
        model.encoder.pad_to_30s, model.config.qformer_padding_mask = saved


def loop_splice_forward(model: DIFFA, batch: Dict[str, torch.Tensor]) -> List[torch.Tensor]:
    """The authors' way: splice each example's audio in a Python loop, right-pad, no mask.

    Returns the text logits of each example, (text_len, V) per example.

    Example
    -------
    >>> _ = torch.manual_seed(0); model = DIFFA(tiny_config()).eval()
    >>> batch = random_batch(model, argparse.Namespace(batch_size=3, min_seconds=0.2, max_seconds=0.6, min_text=3,
    ...                                                max_text=8), torch.Generator().manual_seed(0))
    >>> logits = loop_splice_forward(model, batch)
    >>> [tuple(x.shape) for x in logits]                    # (text_lens[b], vocabulary)
    [(3, 100), (4, 100), (6, 100)]
    >>> [torch.allclose(a, b, atol=1e-4) for a, b in zip(logits, one_at_a_time(model, batch))]
    [False, True, False]

    Only the longest example (text + audio) has no padding to attend to: it alone agrees with
    :func:`one_at_a_time`.
    """
    audio, audio_lens = model.encode_audio(batch["feats"], batch["feat_lens"])
    text = model.llm.get_input_embeddings()(batch["input_ids"])
    rows = []
    for b in range(text.shape[0]):  # deliberately per example: this is the baseline being measured
        p, n, a = int(batch["audio_pos"][b]), int(batch["text_lens"][b]), int(audio_lens[b])
        rows.append(torch.cat([text[b, :p], audio[b, :a].to(text.dtype), text[b, p:n]]))
    embeds = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
    logits = model.llm.lm_head(model.llm.forward_hidden(inputs_embeds=embeds))
    out = []
    for b in range(text.shape[0]):
        p, n, a = int(batch["audio_pos"][b]), int(batch["text_lens"][b]), int(audio_lens[b])
        out.append(torch.cat([logits[b, :p], logits[b, p + a:n + a]]))
    return out


def ours_forward(model: DIFFA, batch: Dict[str, torch.Tensor]) -> List[torch.Tensor]:
    """``DIFFA.forward`` on the whole batch; the text logits of each example.

    Example
    -------
    >>> _ = torch.manual_seed(1); model = DIFFA(tiny_config()).eval()
    >>> batch = random_batch(model, argparse.Namespace(batch_size=3, min_seconds=0.2, max_seconds=0.5, min_text=2,
    ...                                                max_text=9), torch.Generator().manual_seed(1))
    >>> logits = ours_forward(model, batch)
    >>> [len(x) for x in logits] == batch["text_lens"].tolist()
    True
    >>> all(torch.allclose(a, b, atol=1e-5) for a, b in zip(logits, one_at_a_time(model, batch)))  # padding masked
    True
    """
    logits = model(batch["feats"], batch["feat_lens"], batch["input_ids"], batch["audio_pos"], batch["attention_mask"])
    return [logits[b, : int(n)] for b, n in enumerate(batch["text_lens"])]


def one_at_a_time(model: DIFFA, batch: Dict[str, torch.Tensor]) -> List[torch.Tensor]:
    """``DIFFA.forward`` on each example alone.

    Example
    -------
    >>> model = DIFFA(tiny_config(vocab=50)).eval()
    >>> args = argparse.Namespace(batch_size=2, min_seconds=0.3, max_seconds=0.4, min_text=4, max_text=7)
    >>> batch = random_batch(model, args, torch.Generator().manual_seed(3))
    >>> batch["text_lens"].tolist(), [tuple(x.shape) for x in one_at_a_time(model, batch)]
    ([5, 7], [(5, 50), (7, 50)])
    """
    out = []
    for b in range(batch["feats"].shape[0]):
        n, t = int(batch["text_lens"][b]), int(batch["feat_lens"][b])
        out.append(model(batch["feats"][b:b + 1, :t], batch["feat_lens"][b:b + 1], batch["input_ids"][b:b + 1, :n],
                         batch["audio_pos"][b:b + 1])[0])
    return out


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]


def _heap_reader() -> Optional[Callable[[], int]]:
    """Bytes of malloc'ed memory in use (glibc's ``mallinfo2``), or None where it is missing."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):
        return None
    return lambda: (lambda m: m.uordblks + m.hblkhd)(libc.mallinfo2())


class PeakHeap:
    """Peak CPU memory in use (malloc'ed bytes) while the block runs, sampled every millisecond.

    Freed memory that the allocator keeps is not counted, so runs measured one after another do
    not hide each other's peaks (the resident set size would).

    Arguments
    ---------
    read : callable
        Returns the bytes in use now (``_heap_reader()`` on glibc).

    Example
    -------
    >>> import itertools
    >>> readings = itertools.chain([10, 30], itertools.repeat(20))   # in use: 10, then 30, then 20
    >>> with PeakHeap(lambda: next(readings)) as watch:
    ...     pass
    >>> watch.start, watch.peak, watch.peak - watch.start
    (10, 30, 20)
    """

    def __init__(self, read: Callable[[], int]):
        self.read, self.peak = read, 0
        self._stop = threading.Event()

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.read())
            time.sleep(0.001)

    def __enter__(self):
        self.peak = self.start = self.read()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.read())


def measure(fn: Callable[[], object], device: torch.device, repeats: int) -> Dict[str, float]:
    """Median milliseconds of ``fn`` over ``repeats`` runs (after one warm-up) and its peak memory.

    Example
    -------
    >>> calls = []
    >>> result = measure(lambda: calls.append(1), torch.device("cpu"), repeats=3)
    >>> sorted(result), result["ms"] >= 0, len(calls)   # warm-up, peak-memory run, 3 timed runs
    (['ms', 'peak'], True, 5)
    """
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fn()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        sync()
        peak = torch.cuda.max_memory_allocated(device) - base
    elif _heap_reader() is not None:
        with PeakHeap(_heap_reader()) as watch:
            fn()
        peak = watch.peak - watch.start
    else:
        peak = float("nan")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return {"ms": 1000 * sorted(times)[len(times) // 2], "peak": peak}


def get_parser() -> argparse.ArgumentParser:
    """The command-line parser.

    Example
    -------
    >>> get_parser().parse_args(["--shape", "small"]).batch_size
    8
    """
    parser = entry_point_parser("diffa.bin.bench_model", __doc__)
    parser.add_argument("--shape", default="tiny", choices=("tiny", "small", "llada8b"), help="random model shape")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument("--dtype", default=None, choices=sorted(DTYPES), help="model dtype (default: bfloat16 on cuda, else float32)")
    parser.add_argument("--batch_size", type=int, default=8, help="examples per batch")
    parser.add_argument("--min_seconds", type=float, default=2.0, help="shortest clip")
    parser.add_argument("--max_seconds", type=float, default=30.0, help="longest clip (at most 30)")
    parser.add_argument("--min_text", type=int, default=40, help="shortest prompt (tokens)")
    parser.add_argument("--max_text", type=int, default=120, help="longest prompt (tokens)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per way (median reported)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random model and batch")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's)")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the benchmark (module docstring); returns the exit status.

    Example
    -------
    The tiny shape on one 0.1-s clip and a 2-token prompt, one timed run per way, on one CPU thread:

    >>> threads = torch.get_num_threads()
    >>> main(["--batch_size", "1", "--min_seconds", "0.1", "--max_seconds", "0.1", "--min_text", "2", "--max_text", "2",
    ...       "--repeats", "1", "--device", "cpu", "--threads", "1"])
    shape tiny on cpu: LLM 0.1M params (d_model 64, 2 layers, vocab 512), encoder 2 layers d_model 16; cpu float32
    batch 1: audio 0.1-0.1 s, prompts 2-2 tokens; useful tokens per batch 7
    way               ms/batch  useful tok/s  positions  peak MiB  max |dlogit|
    ours ...
    loop splice ...
    authors ...
    one at a time ...
    tokens/s ours / loop splice: ...x; peak memory ours / loop splice: ...
    tokens/s ours / authors: ...x; peak memory ours / authors: ...
    tokens/s ours / one at a time: ...x; peak memory ours / one at a time: ...
    0
    >>> torch.set_num_threads(threads)
    >>> with contextlib.redirect_stderr(sys.stdout):  # bad options: one ERROR line on stderr, status 1
    ...     main(["--max_seconds", "31"])
    ERROR: need 0 < min_seconds <= max_seconds <= 30 and 2 <= min_text <= max_text
    1
    """
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if not (0 < args.min_seconds <= args.max_seconds <= 30 and 2 <= args.min_text <= args.max_text):
        print("ERROR: need 0 < min_seconds <= max_seconds <= 30 and 2 <= min_text <= max_text", file=sys.stderr)
        return 1
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = resolve_device(args.device, args.dtype)
    config = model_config(args.shape)
    model = build_model(config, device, dtype, args.seed)
    batch = random_batch(model, args, torch.Generator().manual_seed(args.seed))
    with torch.no_grad():
        audio_lens = model.encode_audio(batch["feats"], batch["feat_lens"])[1]
        with authors_behaviour(model, True):
            audio_30s = model.encode_audio(batch["feats"], batch["feat_lens"])[1]
    useful = int((batch["text_lens"] + audio_lens).sum())
    llm = config.llm
    n_params = sum(p.numel() for p in model.llm.parameters())
    print(f"shape {args.shape} on {device}: LLM {n_params / 1e6:.1f}M params (d_model {llm['d_model']}, {llm['n_layers']} layers, "
          f"vocab {llm['vocab_size']}), encoder {config.encoder['encoder_layers']} layers d_model "
          f"{config.encoder['d_model']}; {device} {str(dtype).replace('torch.', '')}")
    print(f"batch {args.batch_size}: audio {batch['feat_lens'].min().item() / 100:.1f}-{batch['feat_lens'].max().item() / 100:.1f} s, "
          f"prompts {int(batch['text_lens'].min())}-{int(batch['text_lens'].max())} tokens; useful tokens per batch {useful}")
    B = args.batch_size
    max_text = int(batch["text_lens"].max())
    ways = [("ours", False, ours_forward, B * (max_text + int(audio_lens.max()))),
            ("loop splice", False, loop_splice_forward, B * int((batch["text_lens"] + audio_lens).max())),
            ("authors", True, loop_splice_forward, B * int((batch["text_lens"] + audio_30s).max())),
            ("one at a time", False, one_at_a_time, useful)]
    results, outputs = {}, {}
    with torch.no_grad():
        for name, authors, fn, positions in ways:
            with authors_behaviour(model, authors):
                results[name] = measure(lambda: fn(model, batch), device, args.repeats) | {"positions": positions}
                outputs[name] = fn(model, batch)
    print(f"{'way':<15}{'ms/batch':>11}{'useful tok/s':>14}{'positions':>11}{'peak MiB':>10}{'max |dlogit|':>14}")
    for name, _, _, _ in ways:
        r = results[name]
        diff = max(float((a.float() - b.float()).abs().max()) for a, b in zip(outputs[name], outputs["one at a time"]))
        print(f"{name:<15}{r['ms']:>11.1f}{useful / r['ms'] * 1000:>14.0f}{r['positions']:>11}"
              f"{r['peak'] / 2**20:>10.1f}{diff:>14.2e}")
    for other in ("loop splice", "authors", "one at a time"):
        peak = results[other]["peak"]
        memory = f"{results['ours']['peak'] / peak:.2f}" if peak >= 2**20 else "n/a (under 1 MiB)"
        print(f"tokens/s ours / {other}: {results[other]['ms'] / results['ours']['ms']:.2f}x; "
              f"peak memory ours / {other}: {memory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
