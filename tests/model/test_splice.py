"""splice_audio must equal the authors' per-sample concatenation, batched."""

import pytest
import torch

from diffa.model.splice import splice_audio


def naive_splice(text, audio, audio_lens, audio_pos):
    """Reference: concatenate row by row, then left-pad to a common length."""
    rows = []
    for b in range(text.shape[0]):
        p, n = int(audio_pos[b]), int(audio_lens[b])
        rows.append(torch.cat([text[b, :p], audio[b, :n], text[b, p:]]))
    width = max(r.shape[0] for r in rows)
    out = torch.zeros(text.shape[0], width, text.shape[2])
    mask = torch.zeros(text.shape[0], width, dtype=torch.bool)
    for b, r in enumerate(rows):
        out[b, width - r.shape[0]:] = r
        mask[b, width - r.shape[0]:] = True
    return out, mask


@pytest.mark.parametrize("seed", range(5))
def test_matches_per_sample_concatenation(seed):
    g = torch.Generator().manual_seed(seed)
    B, L, A, D = 4, 9, 6, 3
    text, audio = torch.randn(B, L, D, generator=g), torch.randn(B, A, D, generator=g)
    audio_lens = torch.randint(0, A + 1, (B,), generator=g)
    audio_lens[0] = A
    audio_pos = torch.randint(0, L + 1, (B,), generator=g)
    ref, ref_mask = naive_splice(text, audio, audio_lens, audio_pos)
    out = splice_audio(text, audio, audio_lens, audio_pos)
    assert torch.equal(out.mask, ref_mask)
    assert torch.equal(out.embeds[out.mask], ref[ref_mask])
    # the inverse map reads the text back
    assert torch.equal(out.embeds.gather(1, out.text_index[..., None].expand(-1, -1, D)), text)


def test_text_padding_is_masked_and_gradients_flow():
    text = torch.randn(2, 5, 2, requires_grad=True)
    audio = torch.randn(2, 2, 2, requires_grad=True)
    text_mask = torch.tensor([[False, False, True, True, True], [True] * 5])
    out = splice_audio(text, audio, torch.tensor([2, 2]), torch.tensor([3, 1]), text_mask)
    assert out.mask.sum(1).tolist() == [5, 7]
    out.embeds.sum().backward()
    assert torch.equal(text.grad, torch.ones_like(text)) and torch.equal(audio.grad, torch.ones_like(audio))


def test_bad_positions_are_value_errors():
    text, audio = torch.randn(1, 4, 2), torch.randn(1, 2, 2)
    with pytest.raises(ValueError, match="audio_pos"):
        splice_audio(text, audio, torch.tensor([2]), torch.tensor([5]))
    with pytest.raises(ValueError, match="audio_lens"):
        splice_audio(text, audio, torch.tensor([3]), torch.tensor([1]))
