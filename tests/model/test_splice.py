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


def test_padding_is_packed_out_and_gradients_flow():
    """Only real tokens and real audio enter the sequence: width = the longest real example."""
    text = torch.randn(2, 5, 2, requires_grad=True)
    audio = torch.randn(2, 3, 2, requires_grad=True)
    text_mask = torch.tensor([[False, False, True, True, True], [True] * 5])
    out = splice_audio(text, audio, torch.tensor([2, 3]), torch.tensor([3, 1]), text_mask)
    assert out.embeds.shape[1] == 8 and out.mask.sum(1).tolist() == [5, 8]
    # the real content, row by row, equals the per-sample concatenation
    ref = torch.cat([text[0, 2:3], audio[0, :2], text[0, 3:]])
    assert torch.equal(out.embeds[0][out.mask[0]], ref)
    out.embeds.sum().backward()
    assert torch.equal(text.grad[..., 0], text_mask.float())
    assert torch.equal(audio.grad[..., 0], torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]))


def test_bad_positions_are_value_errors():
    text, audio = torch.randn(1, 4, 2), torch.randn(1, 2, 2)
    with pytest.raises(ValueError, match="audio_pos"):
        splice_audio(text, audio, torch.tensor([2]), torch.tensor([5]))
    with pytest.raises(ValueError, match="audio_lens"):
        splice_audio(text, audio, torch.tensor([3]), torch.tensor([1]))
