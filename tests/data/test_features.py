"""Tests of diffa.data.features.WhisperLogMel: parity with transformers' WhisperFeatureExtractor."""
import numpy as np
import pytest
import torch
from transformers import WhisperFeatureExtractor

from diffa.data.features import WhisperLogMel

# Lengths around every case of the end rule: N mod 160 below/at/above 40 (the last frame's window
# reaches 40 samples past T*160), tiny clips, and the 30 s boundary where Whisper's zero padding
# stops and the STFT's reflect padding takes over (longer clips: Whisper with truncation=False).
LENGTHS = [160, 201, 16001, 16039, 16040, 16100, 16159, 479700, 479999, 480000]
LONG = 480170


def _speechlike(n, rng):
    """Harmonics of a gliding pitch under a syllable envelope with pauses, over faint noise."""
    t = np.arange(n) / 16000
    f0 = 110 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None) ** 2
    return (0.3 * voiced * envelope + 1e-4 * rng.standard_normal(n)).astype(np.float32)


def _tail_burst(n, rng):
    """Faint noise with a loud burst in the last 60 samples: its energy sets the utterance maximum
    (hence the floor of every frame), yet only the frames after frame T see most of it."""
    wav = 1e-4 * rng.standard_normal(n)
    wav[-60:] = rng.standard_normal(min(n, 60))
    return wav.astype(np.float32)


def _whisper(extractor, wavs):
    """Whisper's features of each clip, (frames, n_mels), clips of up to 30 s batched."""
    out = extractor(wavs, sampling_rate=16000, return_tensors="np", truncation=False)
    return out["input_features"].transpose(0, 2, 1)


@pytest.mark.parametrize("n_mels", [80, 128])
def test_matches_whisper_feature_extractor_on_every_frame(n_mels):
    extractor = WhisperFeatureExtractor(feature_size=n_mels)
    fbank = WhisperLogMel(n_mels)
    rng = np.random.default_rng(n_mels)
    wavs = [make(n, rng) for n in LENGTHS for make in (_speechlike, _tail_burst)]
    references = list(_whisper(extractor, wavs))
    wavs.append(_speechlike(LONG, rng))
    references.append(_whisper(extractor, wavs[-1])[0])
    for wav, reference in zip(wavs, references):
        n = len(wav)
        t = -(-n // 160) if n <= 480000 else n // 160  # past 30 s: the frames Whisper computes
        feats, feat_lens = fbank(torch.from_numpy(wav)[None])
        assert feats.shape == (1, t, n_mels) and feat_lens.tolist() == [t]
        np.testing.assert_allclose(feats[0].numpy(), reference[:t], atol=1e-4, rtol=0, err_msg=f"N={n}")


def test_frame_count_is_whisper_attention_masks():
    """The authors' encoder wrapper counts ``attention_mask.sum()`` frames (ceil(N / 160)): the
    semantic tokens of an utterance are ((frames - 1) // 2 + 1) // 4 of them."""
    extractor = WhisperFeatureExtractor(feature_size=80)
    fbank = WhisperLogMel(80)
    rng = np.random.default_rng(2)
    for n in LENGTHS + [1, 159, 16480, 16481]:
        wav = _speechlike(n, rng)
        mask = extractor(wav, sampling_rate=16000, return_tensors="np", return_attention_mask=True)["attention_mask"]
        _, feat_lens = fbank(torch.from_numpy(wav)[None])
        assert feat_lens.tolist() == [int(mask.sum())], f"N={n}"


def test_end_of_clip_is_what_the_parity_test_exercises():
    """A plain centred STFT of the unpadded clip misses Whisper on the parity test's tail-burst
    clips by far more than 1e-4, so that test does check the end rule and the maximum."""
    extractor = WhisperFeatureExtractor(feature_size=80)
    rng = np.random.default_rng(0)
    wavs = [_tail_burst(n, rng) for n in (16001, 16039, 16100, 16159)]
    for wav, reference in zip(wavs, _whisper(extractor, wavs)):
        spec = torch.stft(torch.from_numpy(wav), 400, 160, window=torch.hann_window(400),
                          return_complex=True)[:, :-1].abs() ** 2
        log_mel = (spec.T @ WhisperLogMel(80).filters).clamp(min=1e-10).log10()
        naive = (torch.maximum(log_mel, log_mel.max() - 8.0) + 4.0) / 4.0
        error = np.abs(naive.numpy() - reference[: len(wav) // 160]).max()
        assert error > 1e-2, f"N={len(wav)}"


def test_batch_equals_one_by_one_and_pads_with_zeros():
    rng = np.random.default_rng(1)
    lens = [16000, 1201, 159, 480000]
    wavs = torch.zeros(len(lens), max(lens))
    for row, n in enumerate(lens):
        wavs[row, :n] = torch.from_numpy(_speechlike(n, rng))
    fbank = WhisperLogMel(80)
    feats, feat_lens = fbank(wavs, torch.tensor(lens))
    assert feats.shape == (4, 3000, 80) and feat_lens.tolist() == [100, 8, 1, 3000]
    assert feat_lens.dtype == torch.long
    for row, (n, t) in enumerate(zip(lens, feat_lens.tolist())):
        alone, _ = fbank(wavs[row: row + 1, :n])
        torch.testing.assert_close(feats[row, :t], alone[0], atol=1e-5, rtol=0)
        assert bool((feats[row, t:] == 0).all())


def test_range_floor_and_silence():
    fbank = WhisperLogMel(80)
    feats, _ = fbank(torch.randn(1, 3200))
    assert float(feats.max() - feats.min()) <= 2.0 + 1e-6  # floor at max - 8, divided by 4
    silent, _ = fbank(torch.zeros(1, 3200))
    assert bool((silent == -1.5).all())  # (log10(1e-10) + 4) / 4


def test_no_state_and_bad_inputs():
    fbank = WhisperLogMel(80)
    assert len(fbank.state_dict()) == 0  # nothing leaks into model checkpoints
    assert fbank.filters.shape == (201, 80)
    with pytest.raises(ValueError, match="batch, samples"):
        fbank(torch.zeros(400))
    with pytest.raises(ValueError, match="lens must be"):
        fbank(torch.zeros(2, 400), torch.tensor([400, 401]))
    with pytest.raises(ValueError, match="n_mels"):
        WhisperLogMel(0)
