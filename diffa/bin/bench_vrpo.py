"""Peak memory of a VRPO training step against an SFT training step of the same model.

Usage:
  python -m diffa.bin.bench_vrpo                                   # tiny model, CPU
  python -m diffa.bin.bench_vrpo --shape small --rows 16
  python -m diffa.bin.bench_vrpo --shape llada8b --device cuda --dtype bfloat16 --json vrpo_mem.json

Both steps train the same DIFFA (random weights of the chosen shape: ``tiny``, ``small``, or
``llada8b`` = Whisper-large-v3 encoder + LLaDA-8B + DIFFA-2's adapters) with LoRA and the audio
adapters trainable, AdamW, and the same number of sequences per forward pass (``--rows``):

* SFT (curriculum stage 3): ``rows`` examples, answers masked with probability t, logits at the
  masked positions only (``diffa.train.sft.MaskedPredictor`` + ``masked_sft_loss``);
* VRPO (curriculum stage 4): ``rows / (2 * n_draws)`` preference pairs, each answer scored by
  ``n_draws`` ELBO draws under the policy and the frozen reference, which shares the encoder and
  the LLaDA base with the policy (``diffa.train.vrpo``).

Each step runs once to create the optimizer state, then is measured. On CUDA the peak is
``torch.cuda.max_memory_allocated``. On CPU it is the bytes of every tensor alive before the step
(weights, optimizer state) plus the peak of the step's own allocations, from the allocation and
free events the PyTorch profiler records (``profile_memory=True``). The goal (issue 4) is a ratio VRPO / SFT of at most 1.15.

Sequence shape: ``--prompt_len`` text tokens, ``--answer_len`` answer tokens, ``--frames`` log-mel
frames of audio (default: 30 s for ``llada8b``).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
from typing import Callable, Dict, Iterable, Optional, Sequence

import torch
from torch.autograd import DeviceType

from diffa.bin._cli import entry_point_parser
from diffa.bin.bench_model import model_config
from diffa.decode.loading import resolve_device
from diffa.diffusion.noise import mask_answer, sample_t
from diffa.model.diffa import DIFFA
from diffa.nnet.lora import LoRAConfig
from diffa.train.reference import SharedReference
from diffa.train.sft import MaskedPredictor, masked_sft_loss
from diffa.train.stages import prepare_stage
from diffa.train.vrpo import PairELBO, VRPOObjective

GIB = 1024**3
DEFAULT_FRAMES = {"tiny": 200, "small": 1000, "llada8b": 3000}


def build_policy(name: str, device: torch.device, dtype: torch.dtype) -> DIFFA:
    """A random DIFFA of shape ``name`` (:func:`diffa.bin.bench_model.model_config`) on ``device``
    prepared like a stage-3/4 model: frozen
    encoder and LLaDA in ``dtype``, LoRA + audio adapters trainable in float32.

    Example
    -------
    >>> model = build_policy("tiny", torch.device("cpu"), torch.bfloat16)
    >>> trainable = {p.dtype for p in model.parameters() if p.requires_grad}
    >>> trainable, {p.dtype for p in model.parameters() if not p.requires_grad}
    ({torch.float32}, {torch.bfloat16})
    >>> model.training, model.llm.config.vocab_size, torch.get_default_dtype()  # the default dtype is restored
    (True, 512, torch.float32)
    """
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = DIFFA(model_config(name))
            prepare_stage(model, "sft", LoRAConfig())
    finally:
        torch.set_default_dtype(default)
    for param in model.parameters():
        if param.requires_grad:
            param.data = param.data.float()
    return model.train()


def sft_batch(model: DIFFA, rows: int, prompt_len: int, answer_len: int, frames: int, device) -> Dict[str, torch.Tensor]:
    """Random SFT batch: ``rows`` sequences of ``prompt_len + answer_len`` tokens, ``frames`` of audio.

    Example
    -------
    >>> batch = sft_batch(build_policy("tiny", torch.device("cpu"), torch.float32), 2, 3, 2, frames=10, device="cpu")
    >>> {name: tuple(value.shape) for name, value in batch.items()}
    {'feats': (2, 10, 80), 'feat_lens': (2,), 'input_ids': (2, 5), 'audio_pos': (2,), 'answer_mask': (2, 5)}
    >>> batch["answer_mask"][0].tolist()
    [False, False, False, True, True]
    """
    g = torch.Generator().manual_seed(0)
    length = prompt_len + answer_len
    ids = torch.randint(0, model.llm.config.vocab_size - 3, (rows, length), generator=g)
    return {
        "feats": torch.randn(rows, frames, model.config.encoder["num_mel_bins"], generator=g).to(device),
        "feat_lens": torch.full((rows,), frames, device=device),
        "input_ids": ids.to(device),
        "audio_pos": torch.full((rows,), 2, device=device),
        "answer_mask": (torch.arange(length) >= prompt_len).expand(rows, length).to(device),
    }


def pair_batch(model: DIFFA, pairs: int, prompt_len: int, answer_len: int, frames: int, device) -> Dict[str, torch.Tensor]:
    """Random pair batch (:func:`diffa.data.pairs.collate_pairs` layout) with the same shapes.

    Example
    -------
    >>> batch = pair_batch(build_policy("tiny", torch.device("cpu"), torch.float32), 2, 3, 2, frames=10, device="cpu")
    >>> batch["input_ids"].shape, batch["feats"].shape, batch["audio_index"].tolist()  # 2 pairs: 4 rows, audio once
    (torch.Size([4, 5]), torch.Size([2, 10, 80]), [0, 1, 0, 1])
    """
    batch = sft_batch(model, 2 * pairs, prompt_len, answer_len, frames, device)
    batch["feats"], batch["feat_lens"] = batch["feats"][:pairs], batch["feat_lens"][:pairs]
    batch["audio_index"] = torch.arange(pairs, device=device).repeat(2)
    return batch


def resident_bytes(modules: Iterable[torch.nn.Module], optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the distinct storages of the modules' parameters, buffers and gradients and of
    the optimizer state (shared storages counted once).

    Example
    -------
    >>> lin = torch.nn.Linear(4, 2)  # 8 + 2 float32 weights: 40 bytes
    >>> opt = torch.optim.AdamW(lin.parameters())
    >>> resident_bytes([lin], opt), resident_bytes([lin, lin], opt)
    (40, 40)
    >>> lin(torch.ones(1, 4)).sum().backward(); opt.step()
    >>> resident_bytes([lin], opt)  # + gradients (40) + AdamW's two moments (80) and step counters (8)
    168
    """
    tensors = []
    for module in modules:
        for param in module.parameters():
            tensors += [param] + ([param.grad] if param.grad is not None else [])
        tensors += list(module.buffers())
    tensors += [v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)]
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


def cpu_step_peak(step: Callable[[], None]) -> int:
    """Peak bytes allocated during ``step`` on the CPU, above what existed before it: the running
    sum of the profiler's allocation (+) and free (-) events, in time order.

    Example
    -------
    >>> keep = []
    >>> cpu_step_peak(lambda: keep.append(torch.ones(1000) + torch.ones(1000)))   # 3 x 4000 bytes
    12000
    """
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]" and e.device_type() == DeviceType.CPU]
    running = itertools.accumulate(e.nbytes() for e in sorted(events, key=lambda e: e.start_ns()))
    return max(running, default=0)


def peak_bytes(step: Callable[[], None], modules: Sequence[torch.nn.Module], optimizer, device: torch.device) -> int:
    """Peak bytes of one ``step`` after a warm-up step (see the module docstring).

    Example
    -------
    >>> lin, x = torch.nn.Linear(4, 2), torch.ones(8, 4)
    >>> opt = torch.optim.AdamW(lin.parameters())
    >>> step = _train_step(lambda: lin(x).sum(), opt, contextlib.nullcontext)
    >>> peak = peak_bytes(step, [lin], opt, torch.device("cpu"))
    >>> resident_bytes([lin], opt), isinstance(peak, int), peak > resident_bytes([lin], opt)  # weights + AdamW state
    (128, True, True)
    """
    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device)
    return resident_bytes(modules, optimizer) + cpu_step_peak(step)


def _train_step(loss_fn: Callable[[], torch.Tensor], optimizer, autocast) -> Callable[[], None]:
    def step() -> None:
        with autocast():
            loss = loss_fn()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def run(config: str = "tiny", device: str = "cpu", dtype: str = "float32", rows: int = 8, n_draws: int = 4,
        prompt_len: int = 48, answer_len: int = 32, frames: Optional[int] = None) -> Dict[str, object]:
    """Measure both steps; returns the settings, the two peaks (bytes) and their ratio.

    Example
    -------
    >>> run("tiny", rows=12, n_draws=4)
    Traceback (most recent call last):
     ...
    ValueError: --rows must be a multiple of 2 * n_draws = 8, got 12
    """
    if rows % (2 * n_draws):
        raise ValueError(f"--rows must be a multiple of 2 * n_draws = {2 * n_draws}, got {rows}")
    dev, torch_dtype = torch.device(device), getattr(torch, dtype)
    frames = frames or DEFAULT_FRAMES.get(config, 200)
    autocast = (lambda: torch.autocast(dev.type, dtype=torch_dtype)) if torch_dtype != torch.float32 else contextlib.nullcontext
    model = build_policy(config, dev, torch_dtype)
    mask_id = model.llm.config.mask_token_id
    trainable = [p for p in model.parameters() if p.requires_grad]

    predictor = MaskedPredictor(model)
    batch = sft_batch(model, rows, prompt_len, answer_len, frames, dev)

    def sft_loss() -> torch.Tensor:
        t = sample_t(rows, device=dev)
        noisy, masked = mask_answer(batch["input_ids"], batch["answer_mask"], t, mask_id)
        logits = predictor(batch["feats"], batch["feat_lens"], noisy, batch["audio_pos"], masked)
        return masked_sft_loss(logits, batch["input_ids"], masked, t, batch["answer_mask"]).loss

    optimizer = torch.optim.AdamW(trainable, lr=1e-5)
    sft_peak = peak_bytes(_train_step(sft_loss, optimizer, autocast), [model], optimizer, dev)
    del optimizer, batch

    pairs = rows // (2 * n_draws)
    objective = VRPOObjective(SharedReference(model), mask_id)
    scorer = PairELBO(model, mask_id)
    batch = pair_batch(model, pairs, prompt_len, answer_len, frames, dev)

    def vrpo_loss() -> torch.Tensor:
        return objective.loss(*objective.elbos(scorer, batch, n_draws))[0]

    optimizer = torch.optim.AdamW(trainable, lr=1e-5)
    vrpo_peak = peak_bytes(_train_step(vrpo_loss, optimizer, autocast), [model, objective.reference.model], optimizer, dev)
    return {
        "config": config, "device": device, "dtype": dtype, "rows_per_forward": rows, "n_draws": n_draws,
        "vrpo_pairs": pairs, "prompt_len": prompt_len, "answer_len": answer_len, "frames": frames,
        "sft_peak_bytes": sft_peak, "vrpo_peak_bytes": vrpo_peak, "ratio": vrpo_peak / sft_peak,
    }


def get_parser() -> argparse.ArgumentParser:
    """Command-line options.

    Example
    -------
    >>> args = get_parser().parse_args(["--shape", "llada8b", "--device", "cuda", "--dtype", "bfloat16"])
    >>> args.shape, args.rows, args.n_draws
    ('llada8b', 8, 4)
    """
    parser = entry_point_parser("diffa.bin.bench_vrpo", __doc__)
    parser.add_argument("--shape", default="tiny", choices=("tiny", "small", "llada8b"), help="random model shape")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"),
                        help="dtype of the frozen weights, and of autocast when not float32 "
                             "(default: bfloat16 on cuda, float32 on cpu)")
    parser.add_argument("--rows", type=int, default=8, help="sequences per forward (SFT batch; VRPO: pairs x 2 x n_draws)")
    parser.add_argument("--n_draws", type=int, default=4, help="VRPO ELBO draws per answer")
    parser.add_argument("--prompt_len", type=int, default=48, help="text tokens before the answer")
    parser.add_argument("--answer_len", type=int, default=32, help="answer tokens")
    parser.add_argument("--frames", type=int, help="log-mel frames of audio (default: 200 tiny, 1000 small, 3000 llada8b)")
    parser.add_argument("--json", help="also write the result to this JSON file")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Run the benchmark and print the peaks and their ratio.

    Example
    -------
    The tiny shape with 2 sequences per forward (VRPO: 1 pair, 1 draw), 2+1 tokens and 10 frames:

    >>> threads = torch.get_num_threads(); torch.set_num_threads(1)
    >>> main(["--rows", "2", "--n_draws", "1", "--prompt_len", "2", "--answer_len", "1", "--frames", "10",
    ...       "--device", "cpu"])
    shape tiny on cpu (float32): 2 sequences per forward (SFT batch 2; VRPO 1 pairs x 2 answers x 1 draws),
    2+1 tokens, 10 frames
    SFT  step peak: ... GiB
    VRPO step peak: ... GiB
    ratio VRPO/SFT: ... (goal <= 1.15)
    >>> torch.set_num_threads(threads)
    >>> import sys
    >>> try:  # bad options: the usage and the reason on stderr, exit status 2
    ...     with contextlib.redirect_stderr(sys.stdout):
    ...         main(["--rows", "3", "--n_draws", "1"])
    ... except SystemExit as stop:
    ...     print("exit status", stop.code)
    usage: python -m diffa.bin.bench_vrpo [-h] ...
    python -m diffa.bin.bench_vrpo: error: --rows must be a multiple of 2 * n_draws = 2, got 3
    exit status 2
    """
    args = get_parser().parse_args(argv)
    try:
        device, dtype = resolve_device(args.device, args.dtype)
        result = run(args.shape, str(device), str(dtype).removeprefix("torch."), args.rows, args.n_draws, args.prompt_len, args.answer_len, args.frames)
    except ValueError as err:
        get_parser().error(str(err))
    print(f"shape {result['config']} on {result['device']} ({result['dtype']}): {result['rows_per_forward']} sequences "
          f"per forward (SFT batch {result['rows_per_forward']}; VRPO {result['vrpo_pairs']} pairs x 2 answers x "
          f"{result['n_draws']} draws), {result['prompt_len']}+{result['answer_len']} tokens, {result['frames']} frames")
    print(f"SFT  step peak: {result['sft_peak_bytes'] / GIB:.3f} GiB")
    print(f"VRPO step peak: {result['vrpo_peak_bytes'] / GIB:.3f} GiB")
    print(f"ratio VRPO/SFT: {result['ratio']:.3f} (goal <= 1.15)")
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
        os.replace(tmp, args.json)


if __name__ == "__main__":
    main()
