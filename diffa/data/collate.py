"""Batching examples: right-padded training batches and left-padded decoding batches.

Training (:func:`collate_train`, as in DIFFA's code): ``[prompt ; answer ; eot]`` rows right-padded with
eos. The eos padding is part of the answer (the model learns to emit eos), so every position is a
real token and ``answer_mask`` is simply ``position >= prompt_len``.

Decoding (:func:`collate_prompts`): prompts left-padded with eos and an ``attention_mask`` that
is False on the padding, so every row's answer canvas starts at the same column; ``audio_pos`` is
shifted by each row's padding.

Features are zero-padded to the longest in the batch with their lengths in ``feat_lens``.

Example
-------
>>> import torch
>>> from diffa.data.dataset import Example
>>> exs = [Example("a", torch.zeros(4, 2), torch.tensor([5, 6, 7, 8]), 2, 1, {}),
...        Example("b", torch.zeros(6, 2), torch.tensor([5, 6, 6, 7, 8]), 3, 1, {})]
>>> b = collate_train(exs, pad_id=0)
>>> b["input_ids"].tolist(), b["answer_mask"].int().tolist(), b["feat_lens"].tolist()
([[5, 6, 7, 8, 0], [5, 6, 6, 7, 8]], [[0, 0, 1, 1, 1], [0, 0, 0, 1, 1]], [4, 6])
>>> p = collate_prompts(exs, pad_id=0)
>>> p["input_ids"].tolist(), p["attention_mask"].int().tolist(), p["audio_pos"].tolist()
([[0, 5, 6], [5, 6, 6]], [[0, 1, 1], [1, 1, 1]], [2, 1])
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import torch

from diffa.data.dataset import Example


def _pad_feats(examples: Sequence[Example]) -> Dict[str, torch.Tensor]:
    lens = torch.tensor([ex.feats.shape[0] for ex in examples], dtype=torch.long)
    feats = torch.zeros(len(examples), int(lens.max()), examples[0].feats.shape[1])
    for i, ex in enumerate(examples):  # copying variable-length arrays: the one loop batching needs
        feats[i, : ex.feats.shape[0]] = ex.feats
    return {"feats": feats, "feat_lens": lens}


def collate_train(examples: Sequence[Example], pad_id: int) -> Dict[str, object]:
    """Right-pad ``[prompt ; answer]`` with ``pad_id`` (eos); see module docstring.

    Returns a dict with ``ids`` (list of str), ``feats`` (B, T, n_mels), ``feat_lens`` (B,),
    ``input_ids`` (B, L), ``prompt_lens`` (B,), ``audio_pos`` (B,), ``answer_mask`` (B, L) bool.

    Example
    -------
    >>> long = Example("u1", torch.zeros(3, 4), torch.tensor([1, 2, 3, 9]), 3, 1, {})
    >>> short = Example("u2", torch.zeros(5, 4), torch.tensor([1, 2, 9]), 2, 1, {})
    >>> batch = collate_train([long, short], pad_id=9)
    >>> sorted(batch)
    ['answer_mask', 'audio_pos', 'feat_lens', 'feats', 'ids', 'input_ids', 'prompt_lens']
    >>> batch["feats"].shape, batch["input_ids"].tolist(), batch["prompt_lens"].tolist()
    (torch.Size([2, 5, 4]), [[1, 2, 3, 9], [1, 2, 9, 9]], [3, 2])
    """
    ids = torch.nn.utils.rnn.pad_sequence([ex.input_ids for ex in examples], batch_first=True, padding_value=pad_id)
    prompt_lens = torch.tensor([ex.prompt_len for ex in examples], dtype=torch.long)
    answer_mask = torch.arange(ids.shape[1])[None] >= prompt_lens[:, None]
    return {
        "ids": [ex.id for ex in examples],
        **_pad_feats(examples),
        "input_ids": ids,
        "prompt_lens": prompt_lens,
        "audio_pos": torch.tensor([ex.audio_pos for ex in examples], dtype=torch.long),
        "answer_mask": answer_mask,
    }


def collate_prompts(examples: Sequence[Example], pad_id: int) -> Dict[str, object]:
    """Left-pad the prompts (``input_ids[:prompt_len]``); see module docstring.

    Returns ``ids``, ``feats``, ``feat_lens``, ``input_ids`` (B, L), ``attention_mask`` (B, L)
    bool, ``audio_pos`` (B,) in padded coordinates, and ``rows`` (the manifest rows).

    Example
    -------
    >>> prompts = [Example("u1", torch.zeros(6, 4), torch.tensor([1, 2, 3]), 3, 1, {"answer": "yes"}),
    ...            Example("u2", torch.zeros(2, 4), torch.tensor([1, 3]), 2, 1, {"answer": "no"})]
    >>> batch = collate_prompts(prompts, pad_id=9)
    >>> sorted(batch)
    ['attention_mask', 'audio_pos', 'feat_lens', 'feats', 'ids', 'input_ids', 'rows']
    >>> batch["input_ids"].tolist(), batch["attention_mask"].tolist(), batch["audio_pos"].tolist()
    ([[1, 2, 3], [9, 1, 3]], [[True, True, True], [False, True, True]], [1, 2])
    >>> batch["feat_lens"].tolist(), [row["answer"] for row in batch["rows"]]
    ([6, 2], ['yes', 'no'])
    """
    prompts: List[torch.Tensor] = [ex.input_ids[: ex.prompt_len] for ex in examples]
    width = max(p.shape[0] for p in prompts)
    pad = torch.tensor([width - p.shape[0] for p in prompts], dtype=torch.long)
    ids = torch.nn.utils.rnn.pad_sequence([p.flip(0) for p in prompts], batch_first=True, padding_value=pad_id).flip(1)
    attention_mask = torch.arange(width)[None] >= pad[:, None]
    return {
        "ids": [ex.id for ex in examples],
        **_pad_feats(examples),
        "input_ids": ids,
        "attention_mask": attention_mask,
        "audio_pos": torch.tensor([ex.audio_pos for ex in examples], dtype=torch.long) + pad,
        "rows": [ex.row for ex in examples],
    }
