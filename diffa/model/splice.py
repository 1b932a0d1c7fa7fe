"""Splicing audio embeddings into token embeddings, for the whole batch at once.

Every example becomes ``text[:audio_pos] ; audio[:n_audio] ; text[audio_pos:]`` with its padding
(text positions where ``text_mask`` is False, audio slots past ``n_audio``) left out, so the LLM
computes exactly the real positions of the longest example and no more. Shorter examples are
right-aligned: their spare slots go to the *left* and are masked out, so the answer region (the
end of the text) stays aligned across the batch, which the sampler relies on. One scatter per
source places every embedding (all padding goes to one scratch column that is dropped); the
inverse map ``text_index`` lets the caller gather the text positions back out.

Example
-------
>>> import torch
>>> text = torch.arange(5.).view(1, 5, 1).repeat(2, 1, 1)            # tokens 0..4
>>> audio = torch.full((2, 3, 1), -1.)
>>> out = splice_audio(text, audio, audio_lens=torch.tensor([3, 1]), audio_pos=torch.tensor([2, 2]),
...                    text_mask=torch.tensor([[True] * 5, [False, True, True, True, True]]))
>>> out.embeds[..., 0]
tensor([[ 0.,  1., -1., -1., -1.,  2.,  3.,  4.],
        [ 0.,  0.,  0.,  1., -1.,  2.,  3.,  4.]])
>>> out.mask.int()
tensor([[1, 1, 1, 1, 1, 1, 1, 1],
        [0, 0, 0, 1, 1, 1, 1, 1]], dtype=torch.int32)
>>> out.text_index[0].tolist(), out.text_index[1, 1:].tolist()       # row 1's pad reads slot 0
([0, 1, 5, 6, 7], [3, 5, 6, 7])
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch


class Spliced(NamedTuple):
    """Result of :func:`splice_audio`.

    embeds : (B, L_text + A, D) combined embeddings.
    mask : (B, L_text + A) bool, True at real tokens and real audio frames.
    text_index : (B, L_text) position of every text token in the combined sequence.

    Example
    -------
    >>> text = torch.randn(2, 4, 3)
    >>> embeds, mask, text_index = splice_audio(text, torch.randn(2, 2, 3), torch.tensor([2, 0]), torch.tensor([1, 4]))
    >>> embeds.shape, mask.sum(1).tolist(), text_index.tolist()
    (torch.Size([2, 6, 3]), [6, 4], [[0, 3, 4, 5], [2, 3, 4, 5]])
    >>> torch.equal(embeds.gather(1, text_index[..., None].expand(-1, -1, 3)), text)  # the text back out
    True
    """

    embeds: torch.Tensor
    mask: torch.Tensor
    text_index: torch.Tensor


def splice_audio(
    text_embeds: torch.Tensor,
    audio_embeds: torch.Tensor,
    audio_lens: torch.Tensor,
    audio_pos: torch.Tensor,
    text_mask: Optional[torch.Tensor] = None,
) -> Spliced:
    """Insert ``audio_embeds[b, :audio_lens[b]]`` before text position ``audio_pos[b]``.

    Arguments
    ---------
    text_embeds : torch.Tensor
        (B, L_text, D) token embeddings.
    audio_embeds : torch.Tensor
        (B, A, D) audio embeddings; row b is valid up to ``audio_lens[b]``.
    audio_lens : torch.Tensor
        (B,) number of valid audio embeddings.
    audio_pos : torch.Tensor
        (B,) text index the audio goes before (0 <= audio_pos <= L_text).
    text_mask : torch.Tensor, optional
        (B, L_text) bool, False at padding tokens.

    Returns
    -------
    Spliced
        Combined embeddings, their padding mask and the text positions' indices.

    Example
    -------
    >>> out = splice_audio(torch.zeros(1, 3, 2), torch.ones(1, 2, 2), torch.tensor([2]), torch.tensor([3]))
    >>> out.embeds[0, :, 0].tolist(), out.mask.all().item()             # audio after the last token
    ([0.0, 0.0, 0.0, 1.0, 1.0], True)
    >>> splice_audio(torch.zeros(1, 3, 2), torch.ones(1, 2, 2), torch.tensor([2]), torch.tensor([4]))
    Traceback (most recent call last):
     ...
    ValueError: audio_pos [4] outside [0, 3] (the text length)
    """
    B, L, D = text_embeds.shape
    A = audio_embeds.shape[1]
    if audio_embeds.shape[0] != B or audio_embeds.shape[2] != D:
        raise ValueError(f"audio embeddings {tuple(audio_embeds.shape)} do not match text embeddings {tuple(text_embeds.shape)}")
    if bool((audio_lens > A).any()) or bool((audio_lens < 0).any()):
        raise ValueError(f"audio_lens {audio_lens.tolist()} outside [0, {A}]")
    if bool((audio_pos < 0).any()) or bool((audio_pos > L).any()):
        raise ValueError(f"audio_pos {audio_pos.tolist()} outside [0, {L}] (the text length)")
    device = text_embeds.device
    audio_lens, audio_pos = audio_lens.to(device)[:, None], audio_pos.to(device)[:, None]
    real = torch.ones(B, L, dtype=torch.bool, device=device) if text_mask is None else text_mask.to(device).bool()
    rank = real.cumsum(1) - 1  # index of each real token among its row's real tokens
    j = torch.arange(L, device=device)[None]
    before = (real & (j < audio_pos)).sum(1, keepdim=True)  # real tokens ahead of the audio
    total = real.sum(1, keepdim=True) + audio_lens
    width = int(total.max())
    offset = width - total  # spare slots, on the left
    scratch = width  # every padding position is written here, then dropped
    text_dest = torch.where(real, offset + rank + audio_lens * (j >= audio_pos), scratch)
    i = torch.arange(A, device=device)[None]
    audio_valid = i < audio_lens
    audio_dest = torch.where(audio_valid, offset + before + i, scratch)

    embeds = text_embeds.new_zeros(B, width + 1, D)
    embeds = embeds.scatter(1, text_dest[..., None].expand(-1, -1, D), text_embeds)
    embeds = embeds.scatter(1, audio_dest[..., None].expand(-1, -1, D), audio_embeds.to(text_embeds.dtype))
    mask = torch.zeros(B, width + 1, dtype=torch.bool, device=device)
    mask = mask.scatter(1, text_dest, real).scatter(1, audio_dest, audio_valid)
    # padding text positions read slot 0: their outputs are meaningless either way
    return Spliced(embeds[:, :width], mask[:, :width], torch.where(real, text_dest, 0))
