"""Splicing audio embeddings into token embeddings, for the whole batch at once.

Every example is ``text[:audio_pos] ; audio[:n_audio] ; text[audio_pos:]``. Examples whose audio is
shorter than the longest in the batch are right-aligned: the spare slots go to the *left* of the
sequence and are masked out, so the answer region (the end of the text) stays aligned across the
batch, which the sampler relies on. One scatter per source places every embedding; the inverse map
``text_index`` lets the caller read the text positions back out with a gather.

Example
-------
>>> import torch
>>> text = torch.arange(5.).view(1, 5, 1).repeat(2, 1, 1)            # tokens 0..4
>>> audio = torch.full((2, 3, 1), -1.)
>>> out = splice_audio(text, audio, audio_lens=torch.tensor([3, 1]), audio_pos=torch.tensor([2, 1]))
>>> out.embeds[..., 0]
tensor([[ 0.,  1., -1., -1., -1.,  2.,  3.,  4.],
        [-1., -1.,  0., -1.,  1.,  2.,  3.,  4.]])
>>> out.mask
tensor([[ True,  True,  True,  True,  True,  True,  True,  True],
        [False, False,  True,  True,  True,  True,  True,  True]])
>>> out.text_index
tensor([[0, 1, 5, 6, 7],
        [2, 4, 5, 6, 7]])
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch


class Spliced(NamedTuple):
    """Result of :func:`splice_audio`.

    embeds : (B, L_text + A, D) combined embeddings.
    mask : (B, L_text + A) bool, True at real tokens and real audio frames.
    text_index : (B, L_text) position of every text token in the combined sequence.
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
    audio_lens = audio_lens.to(device)
    audio_pos = audio_pos.to(device)
    offset = (A - audio_lens)[:, None]  # spare audio slots, placed on the left
    j = torch.arange(L, device=device)[None]
    text_index = offset + j + audio_lens[:, None] * (j >= audio_pos[:, None])
    i = torch.arange(A, device=device)[None]
    audio_valid = i < audio_lens[:, None]
    # valid frames follow the text prefix; spare slot i fills left position i - audio_len
    audio_index = torch.where(audio_valid, offset + audio_pos[:, None] + i, i - audio_lens[:, None])

    embeds = text_embeds.new_zeros(B, L + A, D)
    embeds = embeds.scatter(1, text_index[..., None].expand(-1, -1, D), text_embeds)
    embeds = embeds.scatter(1, audio_index[..., None].expand(-1, -1, D), audio_embeds.to(text_embeds.dtype))
    if text_mask is None:
        text_mask = torch.ones(B, L, dtype=torch.bool, device=device)
    mask = torch.zeros(B, L + A, dtype=torch.bool, device=device)
    mask = mask.scatter(1, text_index, text_mask.bool()).scatter(1, audio_index, audio_valid)
    return Spliced(embeds, mask, text_index)
