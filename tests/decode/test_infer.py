"""One question about one clip: any sample rate and channel count, file or array."""

import numpy as np
import pytest
import soundfile as sf

from diffa.decode.config import DecodeConfig
from diffa.decode.infer import answer, waveform_16k
from diffa.decode.loading import load_for_decoding

CONFIG = DecodeConfig(gen_length=8, block_length=8, steps=8)


@pytest.fixture(scope="module")
def loaded(toy):
    return load_for_decoding(toy.model_dir, device="cpu")


def tone(rate, seconds=0.5, channels=2):
    t = np.arange(int(rate * seconds)) / rate
    mono = 0.3 * np.sin(2 * np.pi * 440 * t)
    return np.stack([mono * (1 + 0.1 * c) for c in range(channels)], axis=1).astype(np.float32)


def test_file_and_array_give_the_same_answer(loaded, tmp_path):
    model, tok = loaded
    audio = tone(44100)
    path = str(tmp_path / "stereo_44k.wav")
    sf.write(path, audio, 44100, subtype="FLOAT")
    from_file = answer(model, tok, path, "What do you hear?", config=CONFIG)
    from_array = answer(model, tok, audio, "What do you hear?", config=CONFIG, sample_rate=44100)
    assert isinstance(from_file.text, str) and 1 <= from_file.nfe <= 8
    assert (from_file.text, from_file.nfe) == (from_array.text, from_array.nfe)


def test_waveforms_are_mono_16k_and_at_most_30s(tmp_path):
    assert waveform_16k(tone(8000, 1.0, channels=3), sample_rate=8000).shape == (16000,)
    long = np.zeros(16000 * 31, np.float32)
    assert waveform_16k(long, sample_rate=16000).shape == (16000 * 30,)
    path = str(tmp_path / "mono_22k.flac")
    sf.write(path, tone(22050, 1.0, channels=1)[:, 0], 22050)
    assert waveform_16k(path).shape == (16000,)


@pytest.mark.parametrize("audio, rate, question, message", [
    (np.zeros(100, np.float32), None, "Who?", "needs its sample_rate"),
    (np.zeros((2, 2, 2), np.float32), 16000, "Who?", r"must be \(samples,\) or \(samples, channels\)"),
    (np.zeros(100, np.float32), 16000, "Who?", "shorter than one 10 ms frame"),
    (np.zeros(16000, np.float32), 16000, "  ", "question must be a non-empty string"),
])
def test_bad_input(loaded, audio, rate, question, message):
    model, tok = loaded
    with pytest.raises(ValueError, match=message):
        answer(model, tok, audio, question, config=CONFIG, sample_rate=rate)
