"""Tests of diffa.data.audio.load_audio: conversions, counting flags, and every bad input."""
import numpy as np
import pytest
import soundfile as sf

from diffa.data.audio import AudioError, load_audio


def _sine(freq, seconds, sr, channels=1):
    t = np.arange(int(seconds * sr)) / sr
    wave = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    if channels == 1:
        return wave
    return np.stack([wave * (c + 1) / channels for c in range(channels)], axis=1)


def _save(tmp_path, name, data, sr, **kwargs):
    path = str(tmp_path / name)
    sf.write(path, data, sr, **kwargs)
    return path


def test_16k_mono_is_returned_unchanged(tmp_path):
    wave = _sine(440, 0.5, 16000)
    path = _save(tmp_path, "a.wav", wave, 16000, subtype="FLOAT")
    wav, info = load_audio(path)
    assert wav.dtype == np.float32 and wav.shape == (8000,)
    np.testing.assert_array_equal(wav, wave)
    assert (info.sample_rate, info.channels, info.num_samples) == (16000, 1, 8000)
    assert not (info.resampled or info.downmixed or info.truncated)


def test_stereo_is_downmixed_to_the_channel_mean(tmp_path):
    stereo = _sine(300, 0.25, 16000, channels=2)
    path = _save(tmp_path, "st.flac", stereo, 16000)  # PCM_16 FLAC
    wav, info = load_audio(path)
    expected = sf.read(path, dtype="float32")[0].mean(axis=1)
    np.testing.assert_allclose(wav, expected, atol=1e-7)
    assert info.downmixed and info.channels == 2 and not info.resampled


def test_8k_is_resampled_to_16k(tmp_path):
    path = _save(tmp_path, "nb.wav", _sine(440, 1.0, 8000), 8000, subtype="FLOAT")
    wav, info = load_audio(path)
    assert info.resampled and info.sample_rate == 8000 and wav.shape == (16000,)
    # Away from the edges the resampled sine matches the sine sampled at 16 kHz.
    np.testing.assert_allclose(wav[800:-800], _sine(440, 1.0, 16000)[800:-800], atol=5e-3)


def test_long_audio_is_truncated_after_resampling(tmp_path):
    path = _save(tmp_path, "long.wav", _sine(200, 31.0, 8000), 8000)
    wav, info = load_audio(path, max_seconds=30, long_audio="truncate")
    assert wav.shape == (30 * 16000,) and info.truncated and info.resampled
    full, info = load_audio(path)
    assert len(full) == 31 * 16000 and not info.truncated
    np.testing.assert_array_equal(wav, full[: 30 * 16000])


def test_long_audio_is_rejected_on_request(tmp_path):
    path = _save(tmp_path, "long.wav", np.zeros(16000 * 3 + 1, np.float32), 16000)
    with pytest.raises(AudioError, match=r"long.wav: 3.00 s is longer than max_seconds=3") as err:
        load_audio(path, max_seconds=3, long_audio="reject")
    assert err.value.reason == "too_long"
    wav, info = load_audio(path, max_seconds=4, long_audio="reject")
    assert len(wav) == 16000 * 3 + 1 and not info.truncated


def _bad_file(tmp_path, kind):
    if kind == "missing":
        return str(tmp_path / "nowhere.wav")
    if kind == "empty":
        return _save(tmp_path, "empty.wav", np.zeros(0, np.float32), 16000)
    path = str(tmp_path / "garbage.wav")
    with open(path, "wb") as f:
        f.write(b"RIFF\x00\x00not really a wave file" * 4)
    return path


@pytest.mark.parametrize(
    "kind, reason, message",
    [
        ("missing", "missing", "nowhere.wav does not exist"),
        ("empty", "empty", "empty.wav: the file has no samples"),
        ("garbage", "unreadable", "garbage.wav: cannot be read as audio"),
    ],
)
def test_bad_files_raise_audio_error_with_reason(tmp_path, kind, reason, message):
    with pytest.raises(AudioError, match=message) as err:
        load_audio(_bad_file(tmp_path, kind))
    assert err.value.reason == reason
    assert isinstance(err.value, ValueError)


def test_pipe_commands_are_refused(tmp_path):
    with pytest.raises(AudioError, match="pipe commands are not supported") as err:
        load_audio("sox in.flac -t wav - |")
    assert err.value.reason == "unreadable"


@pytest.mark.parametrize(
    "kwargs, message",
    [({"long_audio": "drop"}, "long_audio must be one of"), ({"max_seconds": 0}, "positive")],
)
def test_bad_arguments(tmp_path, kwargs, message):
    path = _save(tmp_path, "a.wav", np.zeros(160, np.float32), 16000)
    with pytest.raises(ValueError, match=message):
        load_audio(path, **kwargs)
