"""Per-example diffusion noise that depends only on (seed, epoch, example, position).

Masked-diffusion SFT corrupts each example with a time ``t ~ U(eps, 1)`` and masks each answer
token with probability ``t`` (:mod:`diffa.diffusion.noise`). Here the uniforms behind
those draws come from a counter-based generator: a 64-bit hash (the SplitMix64 finaliser) of
``(seed, epoch, example key, position)``. The noise an example gets is therefore the same
whatever batch, rank, number of processes or resume point it is processed in:

* a run resumed from a checkpoint corrupts the rest of the epoch exactly as an uninterrupted run;
* a 2-process run and a 1-process run over the union of the two shards see identical corrupted
  examples (and, with DDP averaging, identical gradients).

The draws follow :func:`diffa.diffusion.noise.sample_t` and
:func:`diffa.diffusion.noise.mask_answer`: ``t = (1 - eps) u + eps`` and a token is masked when
its uniform is below ``t``. Uniforms have 24 random bits (exact in float32).

Example
-------
>>> import torch
>>> ids = torch.tensor([[5, 6, 7, 8], [5, 6, 7, 8]])
>>> answer = torch.tensor([[False, True, True, True], [False, False, True, True]])
>>> noisy, masked, t = corrupt(ids, answer, keys=torch.tensor([3, 4]), mask_id=0, seed=1, epoch=2)
>>> bool((masked <= answer).all()), t.shape
(True, torch.Size([2]))
>>> again = corrupt(ids[1:], answer[1:], keys=torch.tensor([4]), mask_id=0, seed=1, epoch=2)
>>> torch.equal(again[0], noisy[1:]) and torch.equal(again[2], t[1:])
True
"""

from __future__ import annotations

from typing import Tuple, Union

import torch

Key = Union[int, torch.Tensor]


def _signed(constant: int) -> int:
    """A 64-bit unsigned constant as the int64 with the same bits."""
    return constant - (1 << 64) if constant >= (1 << 63) else constant


_GOLDEN = _signed(0x9E3779B97F4A7C15)
_MUL1 = _signed(0xBF58476D1CE4E5B9)
_MUL2 = _signed(0x94D049BB133111EB)


def _shift_right(x: torch.Tensor, n: int) -> torch.Tensor:
    """Logical (unsigned) right shift of int64 bits."""
    return (x >> n) & ((1 << (64 - n)) - 1)


def mix64(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64 on int64 tensors (two's-complement wrap-around, bit-exact on CPU and GPU).

    Example
    -------
    >>> int(mix64(torch.tensor([0]))) & (2**64 - 1) == 0xE220A8397B1DCDAF
    True
    """
    x = x + _GOLDEN
    x = (x ^ _shift_right(x, 30)) * _MUL1
    x = (x ^ _shift_right(x, 27)) * _MUL2
    return x ^ _shift_right(x, 31)


def hash_keys(*keys: Key, device: Union[str, torch.device, None] = None) -> torch.Tensor:
    """64-bit hashes (int64) of broadcast integer keys, chained through :func:`mix64`.

    Arguments
    ---------
    *keys : int or LongTensor
        Broadcastable keys; the result has their broadcast shape.
    device : str or torch.device, optional
        Device of the result (default: that of the tensor keys, else CPU).

    Returns
    -------
    torch.Tensor
        int64 hashes.

    Example
    -------
    >>> h = hash_keys(1, torch.tensor([2, 3]))
    >>> h.dtype, bool(h[0] == hash_keys(1, 2)), bool(h[0] != hash_keys(2, 1))
    (torch.int64, True, True)
    """
    if device is None:
        device = next((k.device for k in keys if isinstance(k, torch.Tensor)), None)
    h = torch.zeros((), dtype=torch.long, device=device)
    for key in keys:
        h = mix64(h ^ mix64(torch.as_tensor(key, dtype=torch.long, device=h.device)))
    return h


def keyed_uniform(*keys: Key, device: Union[str, torch.device, None] = None) -> torch.Tensor:
    """Uniforms in [0, 1) (float32, 24 random bits) made from :func:`hash_keys` of the keys.

    Example
    -------
    >>> u = keyed_uniform(7, torch.arange(1000))
    >>> u.shape, bool(((u >= 0) & (u < 1)).all()), abs(u.mean().item() - 0.5) < 0.05
    (torch.Size([1000]), True, True)
    >>> torch.equal(keyed_uniform(7, torch.arange(3)), keyed_uniform(7, torch.arange(5))[:3])
    True
    """
    return _shift_right(hash_keys(*keys, device=device), 40).to(torch.float32) * (2.0**-24)


def corrupt(
    input_ids: torch.Tensor,
    answer_mask: torch.Tensor,
    keys: torch.Tensor,
    mask_id: int,
    seed: int,
    epoch: int,
    eps: float = 1e-3,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Masked-diffusion forward process with keyed noise (see module docstring).

    Arguments
    ---------
    input_ids : torch.Tensor
        (B, L) clean ids.
    answer_mask : torch.Tensor
        (B, L) bool, True at positions that may be masked.
    keys : torch.Tensor
        (B,) a stable integer per example (e.g. its index in the training set).
    mask_id : int
        Mask token id.
    seed, epoch : int
        Run seed and epoch (a new draw every epoch).
    eps : float
        Smallest time, in [0, 1).

    Returns
    -------
    noisy_ids : torch.Tensor
        (B, L) with masked positions set to ``mask_id``.
    masked : torch.Tensor
        (B, L) bool, a subset of ``answer_mask``.
    t : torch.Tensor
        (B,) float32 masking probabilities in [eps, 1).

    Example
    -------
    >>> ids = torch.arange(10).repeat(3, 1)
    >>> noisy, masked, t = corrupt(ids, ids >= 6, torch.tensor([0, 1, 2]), mask_id=99, seed=0, epoch=1)
    >>> bool(masked[:, :6].any()), bool((noisy[masked] == 99).all())
    (False, True)
    """
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"eps must be in [0, 1), got {eps}")
    if input_ids.shape != answer_mask.shape or keys.shape != input_ids.shape[:1]:
        raise ValueError(
            f"input_ids {tuple(input_ids.shape)}, answer_mask {tuple(answer_mask.shape)} and keys "
            f"{tuple(keys.shape)} must be (B, L), (B, L) and (B,)"
        )
    keys = keys.to(input_ids.device)
    t = (1.0 - eps) * keyed_uniform(seed, epoch, keys, 0) + eps
    positions = torch.arange(1, input_ids.shape[1] + 1, device=input_ids.device)
    u = keyed_uniform(seed, epoch, keys[:, None], positions[None, :])
    masked = (u < t[:, None]) & answer_mask
    return input_ids.masked_fill(masked, mask_id), masked, t
