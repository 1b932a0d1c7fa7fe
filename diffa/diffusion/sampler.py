"""The reverse process of a masked diffusion LM (LLaDA), batched, with parallel decoding.

The answer region starts fully masked and is decoded in blocks, left to right. At each step a
mask predictor (the *denoiser*) proposes a token for every masked position of the current block,
and a remasking rule decides which proposals to commit; committed tokens are never remasked.
Three commit rules are supported:

* quota (LLaDA): ``steps / num_blocks`` steps per block, the block's masked tokens spread evenly
  over them (the first ``n % steps`` steps take one extra), the most confident ones first;
* factor (Fast-dLLM): commit the top n confidences c1 >= c2 >= ... while
  ``c_n >= 1 - factor / (n + 1)``, at least one, and all of them when only the last one fails
  (a quirk of the authors' released decoder, absent from the rule as written; their reported numbers
  come from it); the number of steps adapts to the input;
* threshold (Fast-dLLM): commit every confidence >= ``threshold``, at least the top one.

The denoiser is any callable ``denoiser(x (R, L) LongTensor, attention_mask (R, L) bool or None,
rows (R,) LongTensor) -> logits (R, L, V)``; ``rows`` says which prompt of the batch
each row of ``x`` is, so a denoiser that holds per-example conditioning (DIFFA's encoded audio)
can follow. Rows are independent: each row's proposals, commits, early stop and NFE depend on that
row alone, and a step only runs the denoiser on the rows that still have work.

Authors
 * diffa contributors 2025
"""

import logging
from typing import NamedTuple, Optional

import torch

from diffa.diffusion import Denoiser

logger = logging.getLogger(__name__)


class Generation(NamedTuple):
    """What :func:`generate` returns.

    Arguments
    ---------
    sequences : torch.LongTensor
        (batch, prompt_len + gen_length): the (left-padded) prompts followed by the answers.
    nfe : torch.LongTensor
        (batch,) forward passes that computed each row (a classifier-free-guidance step is 2).

    Example
    -------
    >>> out = Generation(torch.tensor([[5, 6]]), torch.tensor([1]))
    >>> out.nfe.tolist()
    [1]
    """

    sequences: torch.Tensor
    nfe: torch.Tensor


@torch.no_grad()
def generate(
    denoiser: Denoiser,
    prompt_ids: torch.Tensor,
    *,
    gen_length: int,
    block_length: int,
    steps: int,
    temperature: float = 0.0,
    cfg_scale: float = 0.0,
    remasking: str = "low_confidence",
    mask_id: int,
    factor: Optional[float] = None,
    threshold: Optional[float] = None,
    eos_id: Optional[int] = None,
    attention_mask: Optional[torch.Tensor] = None,
    generator: Optional[torch.Generator] = None,
    vocab_size: Optional[int] = None,
) -> Generation:
    """Fill ``gen_length`` masked positions after each prompt with LLaDA's reverse process.

    At temperature 0 this commits the same tokens as LLaDA's released ``generate.py``. Our
    choices where it is silent or wasteful: (1) a step runs only on rows with masked positions
    left in the current block, so finished rows and steps that would commit nothing
    (``steps / num_blocks > block_length``) cost no forward pass; (2) only answer positions are
    ever predicted: a ``mask_id`` inside a prompt is kept, and a committed token stays committed
    even if it equals ``mask_id``; (3) Gumbel noise is drawn for the current block only (same
    distribution, less memory); (4) with classifier-free guidance the unconditional copy masks
    the whole prompt region (left pads too, which the attention mask hides anyway) and a step
    counts 2 NFE; (5) ties in confidence go to the leftmost position.

    Arguments
    ---------
    denoiser : callable
        ``denoiser(x, attention_mask, rows) -> logits (R, L, V)`` (module docstring).
    prompt_ids : torch.LongTensor
        (batch, prompt_len) prompts, LEFT-padded. Prompt and pad positions are never changed.
    gen_length : int
        Number of answer positions appended after the prompts.
    block_length : int
        Positions per block; must divide ``gen_length``.
    steps : int
        Total steps of the quota rule; must be a positive multiple of ``gen_length //
        block_length``. Ignored by the factor and threshold rules.
    temperature : float
        0 takes the argmax; > 0 samples by Gumbel-max in float64 (LLaDA's ``add_gumbel_noise``).
    cfg_scale : float
        Classifier-free guidance scale s > 0: logits = u + (s + 1)(c - u), u = prompt masked.
    remasking : str
        "low_confidence" (confidence = float64 softmax probability of the proposal) or
        "random" (confidence ~ U(0, 1); only with the quota rule).
    mask_id : int
        The mask token id; must be below the vocabulary size V.
    factor : float, optional
        Fast-dLLM factor f > 0 (DIFFA-2 uses 1.0). Exclusive with ``threshold``.
    threshold : float, optional
        Confidence threshold in [0, 1]. Exclusive with ``factor``.
    eos_id : int, optional
        When given, a row stops as soon as it has committed an eos and every answer position
        before its first committed eos is committed; all positions after that eos become eos.
        Without it a row stops when its answer has no masks left.
    attention_mask : torch.Tensor, optional
        (batch, prompt_len) bool/0-1, True at real prompt tokens (a suffix of each row).
    generator : torch.Generator, optional
        Source of the Gumbel noise and of the random confidences.
    vocab_size : int, optional
        When given, ``mask_id`` and ``eos_id`` are checked against it before the denoiser first
        runs (an out-of-range mask id would otherwise fail inside the denoiser's embedding);
        they are always checked against the width of the logits.

    Returns
    -------
    Generation
        ``sequences`` (batch, prompt_len + gen_length) and ``nfe`` (batch,).

    Example
    -------
    >>> def denoiser(x, attention_mask, rows):  # a toy that predicts "left neighbour + 1"
    ...     return torch.nn.functional.one_hot((x.roll(1, dims=1) + 1) % 12, 12).float()
    >>> out = generate(denoiser, torch.tensor([[1, 2, 3]]), gen_length=4, block_length=2,
    ...                steps=4, mask_id=11)
    >>> out.sequences.tolist(), out.nfe.tolist()
    ([[1, 2, 3, 4, 5, 6, 7]], [4])
    """
    _check_args(prompt_ids, attention_mask, gen_length, block_length, steps, temperature,
                cfg_scale, remasking, mask_id, eos_id, factor, threshold)
    if vocab_size is not None:
        _check_vocab(vocab_size, mask_id, eos_id)
    batch, plen = prompt_ids.shape
    x = torch.cat([prompt_ids, prompt_ids.new_full((batch, gen_length), mask_id)], dim=1)
    if attention_mask is not None:
        attention_mask = torch.cat([attention_mask.bool(), attention_mask.new_ones(
            (batch, gen_length), dtype=torch.bool)], dim=1)
    masked = torch.zeros_like(x, dtype=torch.bool)
    masked[:, plen:] = True
    nfe = torch.zeros(batch, dtype=torch.long, device=x.device)
    # steps per block; the factor and threshold rules (which ignore the quota) commit at least
    # one token a step, so they never take more than block_length steps
    adaptive = factor is not None or threshold is not None
    per_block = block_length if adaptive else steps // (gen_length // block_length)
    for lo in range(plen, plen + gen_length, block_length):
        hi = lo + block_length
        left = masked[:, lo:hi].sum(1, keepdim=True)
        quota = left // per_block + (torch.arange(per_block, device=x.device) < left % per_block)
        step = 0
        while True:
            rows = masked[:, lo:hi].any(1).nonzero().squeeze(1)
            if rows.numel() == 0:
                break
            logits = _denoise(denoiser, x[rows], None if attention_mask is None else
                              attention_mask[rows], rows, plen, slice(lo, hi), cfg_scale, mask_id)
            _check_vocab(logits.shape[-1], mask_id, eos_id)
            nfe[rows] += 2 if cfg_scale > 0 else 1
            x0, confidence = _propose(logits, temperature, remasking, generator)
            commit = _select(confidence, masked[rows, lo:hi], quota[rows, step], factor, threshold)
            x[rows, lo:hi] = torch.where(commit, x0, x[rows, lo:hi])
            masked[rows, lo:hi] &= ~commit
            if eos_id is not None:
                _stop_at_eos(x, masked, plen, eos_id)
            step += 1
    logger.debug("generated %d rows, mean NFE %.1f", batch, nfe.float().mean().item())
    return Generation(x, nfe)


def _denoise(denoiser, x, attention_mask, rows, plen, block, cfg_scale, mask_id):
    """Logits (R, K, V) of the rows ``x`` in ``block``; with guidance both copies run at once."""
    if cfg_scale <= 0:
        return denoiser(x, attention_mask, rows)[:, block]
    uncond = x.clone()
    uncond[:, :plen] = mask_id
    both = denoiser(torch.cat([x, uncond]),
                    None if attention_mask is None else attention_mask.repeat(2, 1), rows.repeat(2))
    cond, uncond = both[:, block].chunk(2)
    return uncond + (cfg_scale + 1) * (cond - uncond)


def _check_vocab(vocab, mask_id, eos_id):
    """Raise ValueError if a special id is not a token of the denoiser's vocabulary."""
    for name, value in (("mask_id", mask_id), ("eos_id", eos_id)):
        if value is not None and not 0 <= value < vocab:
            raise ValueError(f"generate: {name}={value} is outside the denoiser's vocabulary "
                             f"[0, {vocab}); pass the id of that token in this model")


def _propose(logits, temperature, remasking, generator):
    """Proposed tokens x0 (R, K) and their confidences (R, K) from block logits (R, K, V)."""
    if temperature > 0:
        noise = torch.rand(logits.shape, dtype=torch.float64, device=logits.device,
                           generator=generator)
        x0 = (logits.double().exp() / (-noise.log()) ** temperature).argmax(-1)
    else:
        x0 = logits.argmax(-1)
    if remasking == "random":
        confidence = torch.rand(x0.shape, device=x0.device, generator=generator)
    else:
        confidence = logits.double().softmax(-1).gather(-1, x0.unsqueeze(-1)).squeeze(-1)
    return x0, confidence


def _select(confidence, candidates, quota, factor, threshold):
    """Which candidates (R, K) to commit: the quota (R,) most confident, or factor/threshold."""
    confidence = confidence.masked_fill(~candidates, float("-inf"))
    ordered, order = confidence.sort(dim=-1, descending=True, stable=True)
    ranks = torch.arange(order.shape[-1], device=order.device)
    rank = torch.empty_like(order).scatter_(-1, order, ranks.expand_as(order))
    if factor is not None:
        passes = ordered >= 1 - factor / (ranks.double() + 2)
        passes[:, 0] = True
        quota = passes.long().cumprod(-1).sum(-1)
        # As DIFFA-2's released decoder (Fast-dLLM's get_transfer_index_dynamic), which gave the
        # reported factor-decoding numbers: when only the last candidate fails, it is committed too.
        left = candidates.sum(-1)
        quota = torch.where(quota == left - 1, left, quota)
    elif threshold is not None:
        quota = (ordered >= threshold).sum(-1).clamp(min=1)
    return rank < quota.unsqueeze(-1)


def _stop_at_eos(x, masked, plen, eos_id):
    """Finish (in place) the rows whose answer is committed up to a committed eos: fill eos from
    their first committed eos on and unmask it, so that no later step selects them."""
    todo = masked[:, plen:]
    after_eos = ((x[:, plen:] == eos_id) & ~todo).cumsum(1) > 0
    done = ~(todo & ~after_eos).any(1, keepdim=True)
    x[:, plen:].masked_fill_(after_eos & done, eos_id)
    todo &= ~(after_eos & done)


def _check_args(prompt_ids, attention_mask, gen_length, block_length, steps, temperature,
                cfg_scale, remasking, mask_id, eos_id, factor, threshold):
    """Raise ValueError for arguments :func:`generate` cannot honour."""
    problems = []
    if prompt_ids.dim() != 2:
        problems.append(f"prompt_ids must be (batch, prompt_len), got {tuple(prompt_ids.shape)}")
    elif attention_mask is not None and attention_mask.shape != prompt_ids.shape:
        problems.append(f"attention_mask {tuple(attention_mask.shape)} must match prompt_ids "
                        f"{tuple(prompt_ids.shape)}")
    elif attention_mask is not None and (attention_mask.int().diff(dim=1) < 0).any():
        problems.append("prompts must be LEFT-padded (attention_mask False only before the "
                        "real tokens); re-pad them on the left")
    if block_length <= 0 or gen_length <= 0 or gen_length % block_length:
        problems.append(f"gen_length ({gen_length}) must be a positive multiple of block_length "
                        f"({block_length})")
    elif factor is None and threshold is None and (
            steps <= 0 or steps % (gen_length // block_length)):
        problems.append(f"steps ({steps}) must be a positive multiple of the number of blocks "
                        f"({gen_length // block_length} = gen_length / block_length)")
    if mask_id < 0 or (eos_id is not None and eos_id < 0):
        problems.append(f"mask_id ({mask_id}) and eos_id ({eos_id}) must be token ids (>= 0)")
    if temperature < 0 or cfg_scale < 0:
        problems.append(f"temperature ({temperature}) and cfg_scale ({cfg_scale}) must be >= 0")
    if remasking not in ("low_confidence", "random"):
        problems.append(f"unknown remasking {remasking!r}; use 'low_confidence' or 'random'")
    if factor is not None and threshold is not None:
        problems.append("give factor or threshold, not both")
    if (factor is not None or threshold is not None) and remasking == "random":
        problems.append("factor/threshold decoding needs model confidences; use "
                        "remasking='low_confidence'")
    if factor is not None and factor <= 0:
        problems.append(f"factor ({factor}) must be > 0")
    if threshold is not None and not 0 <= threshold <= 1:
        problems.append(f"threshold ({threshold}) must be in [0, 1]")
    if problems:
        raise ValueError("generate: " + "; ".join(problems))
