"""Forward (noising) process of masked diffusion over the answer tokens.

Masked diffusion corrupts a clean sequence by replacing tokens with the mask token. Only answer
positions are ever corrupted: the prompt (and, inside the model, the audio) stays clean. Two
corruption schemes are provided (LLaDA's SFT; VRPO, LLaDA 1.5 paper):

* :func:`sample_t` + :func:`mask_answer`: the SFT forward process. Each example draws a time
  ``t ~ U(eps, 1)`` and each of its answer tokens is masked independently with probability ``t``.
* :func:`mask_exactly_k`: the VRPO ELBO draws. Each draw picks ``k ~ U{1..L}`` (``L`` = that
  row's answer length) and masks exactly ``k`` answer positions chosen uniformly at random.

Everything is vectorised over the batch; randomness comes from an optional ``torch.Generator`` so
runs are reproducible.

Example
-------
>>> import torch
>>> g = torch.Generator().manual_seed(0)
>>> ids = torch.tensor([[5, 6, 7, 8, 9]])
>>> answer = torch.tensor([[False, False, True, True, True]])
>>> noisy, masked = mask_answer(ids, answer, torch.ones(1), mask_id=0, generator=g)
>>> noisy
tensor([[5, 6, 0, 0, 0]])
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import torch


def _uniform(
    shape: Sequence[int],
    generator: Optional[torch.Generator],
    device: Optional[torch.device],
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """U[0, 1) draws made on the generator's device, returned on ``device``."""
    draw_device = generator.device if generator is not None else device
    u = torch.rand(tuple(shape), generator=generator, device=draw_device, dtype=dtype)
    return u if device is None else u.to(device)


def _check_answer_mask(answer_mask: torch.Tensor) -> None:
    if answer_mask.dim() != 2 or answer_mask.dtype != torch.bool:
        raise ValueError(
            f"answer_mask must be a (batch, length) bool tensor, got shape "
            f"{tuple(answer_mask.shape)} and dtype {answer_mask.dtype}"
        )


def sample_t(
    batch_size: int,
    eps: float = 1e-3,
    generator: Optional[torch.Generator] = None,
    device: Optional[torch.device] = None,
) -> torch.Tensor:
    """Draw one diffusion time per example: ``t = (1 - eps) u + eps`` with ``u ~ U(0, 1)``.

    The floor ``eps`` keeps ``1 / t`` (the loss weight) bounded.

    Arguments
    ---------
    batch_size : int
        Number of examples B.
    eps : float
        Smallest time, in [0, 1). LLaDA and DIFFA use 1e-3.
    generator : torch.Generator, optional
        Source of randomness (draws are made on its device).
    device : torch.device, optional
        Device of the result (default: the generator's device, else CPU).

    Returns
    -------
    torch.Tensor
        (B,) float32 times in [eps, 1).

    Example
    -------
    >>> t = sample_t(4, generator=torch.Generator().manual_seed(0))
    >>> t.shape, bool(((t >= 1e-3) & (t < 1)).all())
    (torch.Size([4]), True)
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"eps must be in [0, 1), got {eps}")
    u = _uniform((batch_size,), generator, device)
    return (1.0 - eps) * u + eps


def mask_answer(
    input_ids: torch.Tensor,
    answer_mask: torch.Tensor,
    t: torch.Tensor,
    mask_id: int,
    generator: Optional[torch.Generator] = None,
) -> tuple:
    """Mask each answer token of row b independently with probability ``t[b]``.

    Arguments
    ---------
    input_ids : torch.Tensor
        (B, L) clean token ids.
    answer_mask : torch.Tensor
        (B, L) bool, True at the positions that may be masked (the answer, including its eos
        padding, as in DIFFA's training code). Prompt positions must be False.
    t : torch.Tensor
        (B,) masking probabilities, e.g. from :func:`sample_t`.
    mask_id : int
        Id of the mask token (``<|mdm_mask|>``).
    generator : torch.Generator, optional
        Source of randomness.

    Returns
    -------
    noisy_ids : torch.Tensor
        (B, L) ``input_ids`` with the masked positions set to ``mask_id``.
    masked : torch.Tensor
        (B, L) bool, True where a token was masked (always a subset of ``answer_mask``).

    Example
    -------
    >>> ids = torch.tensor([[1, 2, 3, 4], [1, 2, 3, 4]])
    >>> answer = torch.tensor([[False, True, True, True], [False, False, True, True]])
    >>> noisy, masked = mask_answer(ids, answer, torch.tensor([1.0, 1.0]), mask_id=9)
    >>> noisy
    tensor([[1, 9, 9, 9],
            [1, 2, 9, 9]])
    >>> bool((masked <= answer).all())
    True
    """
    _check_answer_mask(answer_mask)
    if input_ids.shape != answer_mask.shape:
        raise ValueError(
            f"input_ids {tuple(input_ids.shape)} and answer_mask {tuple(answer_mask.shape)} "
            "must have the same (batch, length) shape"
        )
    if t.shape != (input_ids.shape[0],):
        raise ValueError(f"t must have shape ({input_ids.shape[0]},), got {tuple(t.shape)}")
    u = _uniform(input_ids.shape, generator, input_ids.device)
    masked = (u < t.to(u.dtype).unsqueeze(1)) & answer_mask
    noisy_ids = input_ids.masked_fill(masked, mask_id)
    return noisy_ids, masked


class ExactlyKMasks(NamedTuple):
    """Result of :func:`mask_exactly_k`.

    masks : (n_draws, B, L) bool, True at the masked positions of each draw.
    k : (n_draws, B) number of masked positions of each draw, uniform on {1..lengths[b]}.
    lengths : (B,) answer length of each row.

    Example
    -------
    >>> draws = mask_exactly_k(torch.tensor([[False, True, True]]), n_draws=2)
    >>> draws.k.shape, draws.lengths.tolist()
    (torch.Size([2, 1]), [2])
    """

    masks: torch.Tensor
    k: torch.Tensor
    lengths: torch.Tensor


def mask_exactly_k(
    answer_mask: torch.Tensor,
    n_draws: int,
    generator: Optional[torch.Generator] = None,
    stratified: bool = False,
    groups: Optional[torch.Tensor] = None,
) -> ExactlyKMasks:
    """Draw ``n_draws`` masks per row, each masking exactly k ~ U{1..L_b} answer positions.

    This is the "mask exactly k of L" estimator of LLaDA / VRPO: every draw first picks the
    number of masked tokens uniformly, then which answer positions uniformly among the subsets
    of that size. Vectorised: every position gets a random score (non-answer positions the
    largest), and the positions whose rank among their row is below k are masked.

    With ``stratified``, draw j takes its k from the j-th of n equal strata of U(0, 1)
    (``u_j = (j + U) / n``), so a row's n draws spread over the masking ratios instead of
    clustering: the mean over the draws is still unbiased, with a smaller variance (when n is a
    multiple of L_b, each k comes exactly n / L_b times). Each draw on its own is no longer
    uniform in k.

    With ``groups``, the rows of one group share their random numbers (each draw's U and the
    position scores, column by column): rows of the same length and answer columns get the same
    masks, others of the same masking ratio. Each row's masks keep their distribution, so every
    ELBO stays unbiased, while a difference of two rows' ELBOs (the chosen and rejected answers
    of a preference pair, which share their prompt) loses the noise of two independent draws:
    common random numbers.

    Arguments
    ---------
    answer_mask : torch.Tensor
        (B, L) bool, True at the answer positions; every row needs at least one.
    n_draws : int
        Number of draws n (independent unless ``stratified``).
    generator : torch.Generator, optional
        Source of randomness.
    stratified : bool
        Draw k by strata (above); default: independently.
    groups : torch.Tensor, optional
        (B,) long group of each row, in [0, B): rows of a group share their draws (above).

    Returns
    -------
    ExactlyKMasks
        ``(masks (n, B, L) bool, k (n, B) long, lengths (B,) long)``.

    Example
    -------
    >>> answer = torch.tensor([[False, True, True, True], [False, False, True, True]])
    >>> masks, k, lengths = mask_exactly_k(answer, 3, torch.Generator().manual_seed(0))
    >>> masks.shape, lengths.tolist()
    (torch.Size([3, 2, 4]), [3, 2])
    >>> bool((masks.sum(-1) == k).all()), bool((masks <= answer).all())
    (True, True)
    >>> mask_exactly_k(answer, 6, torch.Generator().manual_seed(0), stratified=True).k.T.tolist()
    [[1, 1, 2, 2, 3, 3], [1, 1, 1, 2, 2, 2]]
    >>> pair = torch.tensor([[False, True, True, True]] * 2)   # two answers after one prompt
    >>> masks = mask_exactly_k(pair, 4, torch.Generator().manual_seed(0), groups=torch.tensor([0, 0])).masks
    >>> bool((masks[:, 0] == masks[:, 1]).all())
    True
    """
    _check_answer_mask(answer_mask)
    if n_draws < 1:
        raise ValueError(f"n_draws must be >= 1, got {n_draws}")
    lengths = answer_mask.sum(-1)
    empty = (lengths == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(
            f"rows {empty} of answer_mask have no answer position; the ELBO of an empty answer "
            "is undefined, drop those examples"
        )
    batch, length = answer_mask.shape
    device = answer_mask.device
    if groups is not None and (groups.shape != (batch,) or groups.min() < 0 or groups.max() >= batch):
        raise ValueError(f"groups must be ({batch},) ids in [0, {batch}), got {groups.tolist()}")
    draws = batch if groups is None else int(groups.max()) + 1
    u = _uniform((n_draws, draws), generator, device)
    if stratified:
        u = (u + torch.arange(n_draws, device=device, dtype=u.dtype).unsqueeze(-1)) / n_draws
    # float64 scores make ties (which would bias the subset) practically impossible.
    scores = _uniform((n_draws, draws, length), generator, device, dtype=torch.float64)
    if groups is not None:
        u, scores = u[:, groups], scores[:, groups]
    k = torch.minimum((u * lengths).long(), lengths - 1) + 1
    scores = scores.masked_fill(~answer_mask, 2.0)
    rank = scores.argsort(dim=-1).argsort(dim=-1)
    masks = rank < k.unsqueeze(-1)
    return ExactlyKMasks(masks, k, lengths)
