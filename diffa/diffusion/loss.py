"""Masked-diffusion training objectives: SFT cross-entropy, Monte-Carlo ELBOs and VRPO.

All functions work in text coordinates (token positions of the prompt and answer, without
the audio block: :mod:`diffa.model.diffa`):

* :func:`sft_loss` - the masked-diffusion SFT loss, ``sum_masked CE / t`` normalised either by
  the number of answer tokens in the padded batch (DIFFA) or per row (LLaDA's guideline).
* :func:`mc_elbo` - per-draw ELBO estimates ``(L / k) sum_masked log p`` for given
  "exactly k of L" masks, scored by any denoiser in ONE batched call.
* :func:`antithetic_elbos` - policy and reference ELBOs computed on the very same masked
  sequences (VRPO's antithetic sampling); only the policy is differentiated.
* :func:`vrpo_loss` - DPO on ELBOs:
  ``-log sigmoid(beta [(B_pol(y_w) - B_ref(y_w)) - (B_pol(y_l) - B_ref(y_l))])``.

A denoiser is any callable ``denoiser(x (R, L) long, attention_mask (R, L) bool or None,
rows (R,) long) -> logits (R, L, V)``; ``rows`` says which example of the batch each
row of ``x`` is.

Example
-------
>>> import torch
>>> logits = torch.zeros(1, 3, 4)                    # uniform over 4 tokens
>>> targets = torch.tensor([[1, 2, 3]])
>>> masked = torch.tensor([[False, True, True]])
>>> answer = torch.tensor([[False, True, True]])
>>> loss = sft_loss(logits, targets, masked, torch.tensor([0.5]), answer)
>>> round(loss.item(), 4)                            # 2 * log(4) / 0.5 / 2
2.7726
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F

from diffa.diffusion import Denoiser
from diffa.diffusion.noise import mask_exactly_k


NORMALIZATIONS = ("batch", "row")


def _masked_log_probs(logits: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor) -> tuple:
    """float32 log p(target) at the masked positions only, with their row indices.

    Only the masked rows of ``logits`` are gathered before the softmax, so the float32 copy is
    (n_masked, V) rather than (B, L, V) (V is 126,464 for LLaDA).
    """
    rows = masked.nonzero(as_tuple=True)[0]
    log_p = -F.cross_entropy(logits[masked].float(), targets[masked], reduction="none")
    return log_p, rows


def sft_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    masked: torch.Tensor,
    t: torch.Tensor,
    answer_mask: torch.Tensor,
    normalization: str = "batch",
) -> torch.Tensor:
    """Masked-diffusion SFT loss: cross-entropy at masked answer positions, weighted by 1/t.

    With ``S_b = sum over masked positions i of row b of CE(logits[b, i], targets[b, i]) / t[b]``
    and ``N_b`` the number of True entries in row b of ``answer_mask``:

    * ``"batch"`` (DIFFA's training code): ``sum_b S_b / sum_b N_b`` - summed over
      the batch and divided by the number of answer tokens in the padded batch;
    * ``"row"`` (LLaDA's SFT guideline): ``mean_b (S_b / N_b)`` - each row divided by its own
      answer length, then averaged over the B rows.

    ``answer_mask`` must mark every non-prompt text position, the eos padding included: pad
    tokens count as answer tokens in both the numerator and the denominator (that is how the
    model learns to emit eos). Cross-entropy is computed in float32.

    Arguments
    ---------
    logits : torch.Tensor
        (B, L, V) denoiser output on the noisy sequence.
    targets : torch.Tensor
        (B, L) clean token ids.
    masked : torch.Tensor
        (B, L) bool, True at the masked positions (a subset of ``answer_mask``).
    t : torch.Tensor
        (B,) masking probability each row was noised with.
    answer_mask : torch.Tensor
        (B, L) bool, True at answer positions (answer tokens and eos padding).
    normalization : str
        ``"batch"`` or ``"row"``, see above.

    Returns
    -------
    torch.Tensor
        Scalar float32 loss.

    Example
    -------
    >>> logits = torch.zeros(2, 3, 4)
    >>> targets = torch.zeros(2, 3, dtype=torch.long)
    >>> answer = torch.tensor([[False, True, True], [True, True, True]])
    >>> masked = torch.tensor([[False, True, False], [True, True, True]])
    >>> t = torch.tensor([1.0, 0.5])
    >>> loss = sft_loss(logits, targets, masked, t, answer, normalization="row")
    >>> torch.allclose(loss, torch.log(torch.tensor(4.0)) * (1 / 2 + 6 / 3) / 2)
    True
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    if logits.dim() != 3 or logits.shape[:2] != targets.shape:
        raise ValueError(
            f"logits must be (B, L, V) matching targets (B, L); got {tuple(logits.shape)} and "
            f"{tuple(targets.shape)}"
        )
    if masked.shape != targets.shape or answer_mask.shape != targets.shape:
        raise ValueError(
            f"masked {tuple(masked.shape)} and answer_mask {tuple(answer_mask.shape)} must have "
            f"the shape of targets {tuple(targets.shape)}"
        )
    if t.shape != (targets.shape[0],):
        raise ValueError(f"t must have shape ({targets.shape[0]},), got {tuple(t.shape)}")
    if (masked & ~answer_mask).any():
        raise ValueError("masked marks positions outside answer_mask; only answers may be masked")
    n_answer = answer_mask.sum(-1)
    log_p, rows = _masked_log_probs(logits, targets, masked)
    weighted = -log_p / t.float()[rows]
    if normalization == "batch":
        total = n_answer.sum()
        if total == 0:
            raise ValueError("the batch has no answer token; sft_loss is undefined")
        return weighted.sum() / total
    empty = (n_answer == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"rows {empty} have no answer token; row normalisation is undefined")
    per_row = torch.zeros(targets.shape[0], dtype=weighted.dtype, device=weighted.device)
    per_row = per_row.index_add(0, rows, weighted)
    return (per_row / n_answer).mean()


def mc_elbo(
    denoiser: Denoiser,
    input_ids: torch.Tensor,
    masks: torch.Tensor,
    lengths: torch.Tensor,
    mask_id: int,
    attention_mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Per-draw ELBO estimates ``(L_b / k) * sum over masked i of log p(x_i | x_masked)``.

    The n masked copies of the batch are scored by the denoiser in ONE call on an (n * B, L)
    batch laid out draw-major: row ``d * B + b`` is draw d of example b, and ``rows`` tells the
    denoiser so (a denoiser holding per-example conditioning, e.g. encoded audio, follows it).
    With masks from :func:`~diffa.diffusion.noise.mask_exactly_k`, each draw is an unbiased
    estimate of the ELBO ``E_k E_mask[(L / k) sum_masked log p]``; average over dim 0 for the
    n-draw estimate.

    Arguments
    ---------
    denoiser : callable
        ``denoiser(x (n*B, L), attention_mask (n*B, L) or None, rows (n*B,)) -> logits (n*B, L, V)``.
    input_ids : torch.Tensor
        (B, L) clean token ids.
    masks : torch.Tensor
        (n, B, L) bool, positions to mask in each draw (at least one per draw).
    lengths : torch.Tensor
        (B,) answer length L_b of each row.
    mask_id : int
        Id of the mask token.
    attention_mask : torch.Tensor, optional
        (B, L) bool key-padding mask passed (repeated) to the denoiser.

    Returns
    -------
    torch.Tensor
        (n, B) float32 per-draw ELBO estimates (differentiable w.r.t. the denoiser).

    Example
    -------
    >>> denoiser = lambda x, attention_mask, rows: torch.zeros(*x.shape, 5)   # uniform over 5 tokens
    >>> ids = torch.tensor([[1, 2, 3, 4]])
    >>> masks = torch.tensor([[[False, True, False, False]], [[False, True, True, True]]])
    >>> elbo = mc_elbo(denoiser, ids, masks, lengths=torch.tensor([3]), mask_id=0)
    >>> torch.allclose(elbo, 3 * torch.log(torch.tensor(0.2)).expand(2, 1))
    True
    """
    n_draws, batch, length = masks.shape
    if input_ids.shape != (batch, length) or lengths.shape != (batch,):
        raise ValueError(
            f"masks (n, B, L) = {tuple(masks.shape)} must match input_ids (B, L) = "
            f"{tuple(input_ids.shape)} and lengths (B,) = {tuple(lengths.shape)}"
        )
    k = masks.sum(-1)
    if (k == 0).any():
        raise ValueError("every ELBO draw must mask at least one position (k >= 1)")
    targets = input_ids.unsqueeze(0).expand(n_draws, batch, length).reshape(-1, length)
    flat_masks = masks.reshape(-1, length)
    noisy = targets.masked_fill(flat_masks, mask_id)
    draw_attention = None if attention_mask is None else attention_mask.repeat(n_draws, 1)
    draw_rows = torch.arange(batch, device=input_ids.device).repeat(n_draws)
    logits = denoiser(noisy, draw_attention, draw_rows)
    log_p, rows = _masked_log_probs(logits, targets, flat_masks)
    sums = torch.zeros(n_draws * batch, dtype=log_p.dtype, device=log_p.device)
    sums = sums.index_add(0, rows, log_p).view(n_draws, batch)
    return sums * (lengths.to(sums.dtype) / k.to(sums.dtype))


def antithetic_elbos(
    policy: Denoiser,
    reference: Denoiser,
    input_ids: torch.Tensor,
    answer_mask: torch.Tensor,
    n_draws: int,
    mask_id: int,
    attention_mask: Optional[torch.Tensor] = None,
    generator: Optional[torch.Generator] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """n-draw ELBOs of the policy and the reference on the SAME masked sequences.

    One set of "exactly k of L" masks is drawn and both models score it (VRPO's antithetic
    sampling: the mask noise cancels in ``B_pol - B_ref``). The reference is scored under
    ``torch.no_grad()``.

    Arguments
    ---------
    policy : callable
        Trainable denoiser, ``(x, attention_mask, rows) -> logits`` (see :func:`mc_elbo`).
    reference : callable
        Frozen denoiser with the same interface.
    input_ids : torch.Tensor
        (B, L) clean ids (prompt + answer).
    answer_mask : torch.Tensor
        (B, L) bool, True at the answer positions (at least one per row).
    n_draws : int
        Monte-Carlo budget n (DIFFA-2 uses 4).
    mask_id : int
        Id of the mask token.
    attention_mask : torch.Tensor, optional
        (B, L) bool key-padding mask.
    generator : torch.Generator, optional
        Source of randomness for the masks.

    Returns
    -------
    policy_elbo : torch.Tensor
        (B,) float32, differentiable.
    reference_elbo : torch.Tensor
        (B,) float32, no gradient.

    Example
    -------
    >>> model = lambda x, attention_mask, rows: torch.nn.functional.one_hot(x, 6).float()
    >>> ids = torch.tensor([[1, 2, 3]])
    >>> answer = torch.tensor([[False, True, True]])
    >>> pol, ref = antithetic_elbos(model, model, ids, answer, n_draws=4, mask_id=5)
    >>> torch.equal(pol, ref)
    True
    """
    masks, _, lengths = mask_exactly_k(answer_mask, n_draws, generator)
    policy_elbo = mc_elbo(policy, input_ids, masks, lengths, mask_id, attention_mask).mean(0)
    with torch.no_grad():
        reference_elbo = mc_elbo(reference, input_ids, masks, lengths, mask_id, attention_mask)
    return policy_elbo, reference_elbo.mean(0)


def vrpo_loss(
    policy_chosen: torch.Tensor,
    reference_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float = 0.2,
) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """VRPO (DPO with ELBOs) loss, averaged over the batch of preference pairs.

    ``loss = -log sigmoid(beta * [(pol_w - ref_w) - (pol_l - ref_l)])``, with the reference
    ELBOs treated as constants (detached).

    Arguments
    ---------
    policy_chosen, reference_chosen : torch.Tensor
        (B,) ELBOs of the chosen answers y_w under the policy and the reference.
    policy_rejected, reference_rejected : torch.Tensor
        (B,) ELBOs of the rejected answers y_l.
    beta : float
        Inverse temperature (DIFFA-2: 0.2), > 0.

    Returns
    -------
    loss : torch.Tensor
        Scalar.
    stats : dict
        Detached scalars: ``reward_chosen`` (mean beta (pol_w - ref_w)), ``reward_rejected``,
        ``reward_margin`` (mean of their difference) and ``accuracy`` (fraction of pairs with a
        positive margin).

    Example
    -------
    >>> loss, stats = vrpo_loss(torch.tensor([-1.0]), torch.tensor([-2.0]),
    ...                         torch.tensor([-3.0]), torch.tensor([-3.0]), beta=0.5)
    >>> torch.allclose(loss, -torch.nn.functional.logsigmoid(torch.tensor(0.5)))
    True
    >>> stats["reward_margin"].item(), stats["accuracy"].item()
    (0.5, 1.0)
    """
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    shapes = {tuple(x.shape) for x in (policy_chosen, reference_chosen, policy_rejected,
                                       reference_rejected)}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ValueError(f"the four ELBO tensors must share one (B,) shape, got {sorted(shapes)}")
    reward_chosen = beta * (policy_chosen - reference_chosen.detach())
    reward_rejected = beta * (policy_rejected - reference_rejected.detach())
    margin = reward_chosen - reward_rejected
    loss = -F.logsigmoid(margin).mean()
    stats = {
        "reward_chosen": reward_chosen.detach().mean(),
        "reward_rejected": reward_rejected.detach().mean(),
        "reward_margin": margin.detach().mean(),
        "accuracy": (margin.detach() > 0).float().mean(),
    }
    return loss, stats
