"""Load one audio file as 16 kHz mono float32, saying what had to be changed or why it failed.

Any format libsndfile reads (wav, flac, ogg, ...) at any sample rate and channel count is
accepted: channels are averaged (downmix), the rate is converted with
``torchaudio.functional.resample`` (windowed-sinc, deterministic), and audio longer than
``max_seconds`` is either cut to its first ``max_seconds`` or rejected. What happened is reported in
an :class:`AudioInfo` so callers can count it; a file that cannot be used raises :class:`AudioError`
whose ``reason`` is one of ``missing``, ``unreadable``, ``empty``, ``too_long``.

Example
-------
>>> import os, tempfile, numpy as np, soundfile as sf
>>> path = os.path.join(tempfile.mkdtemp(), "stereo8k.wav")
>>> sf.write(path, np.zeros((8000, 2), np.float32), 8000)
>>> wav, info = load_audio(path)
>>> wav.shape, wav.dtype, info.resampled, info.downmixed, info.truncated
((16000,), dtype('float32'), True, True, False)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import soundfile
import torch
import torchaudio.functional

LONG_AUDIO_POLICIES = ("truncate", "reject")


class AudioError(ValueError):
    """An audio file that cannot be turned into features.

    Arguments
    ---------
    reason : str
        A short code: ``missing``, ``unreadable``, ``empty`` or ``too_long``.
    message : str
        What is wrong, naming the file, and what to do.

    Example
    -------
    >>> err = AudioError("missing", "x.wav does not exist")
    >>> err.reason, str(err)
    ('missing', 'x.wav does not exist')
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class AudioInfo:
    """What :func:`load_audio` found and changed.

    Arguments
    ---------
    sample_rate : int
        The file's sample rate.
    channels : int
        The file's channel count.
    num_samples : int
        The file's length in samples (per channel, at ``sample_rate``).
    resampled : bool
        The rate was converted.
    downmixed : bool
        Several channels were averaged into one.
    truncated : bool
        The audio was cut to ``max_seconds``.

    Example
    -------
    >>> AudioInfo(16000, 1, 16000, False, False, False).num_samples
    16000
    """

    sample_rate: int
    channels: int
    num_samples: int
    resampled: bool
    downmixed: bool
    truncated: bool


def load_audio(
    path: str,
    target_sr: int = 16000,
    max_seconds: Optional[float] = None,
    long_audio: str = "truncate",
) -> Tuple[np.ndarray, AudioInfo]:
    """Read an audio file as a mono float32 waveform at ``target_sr``.

    Arguments
    ---------
    path : str
        The file (relative paths are relative to the working directory).
    target_sr : int
        Output sample rate.
    max_seconds : float, optional
        Longest allowed duration; None allows any length.
    long_audio : str
        What to do with audio longer than ``max_seconds``: ``"truncate"`` keeps the first
        ``max_seconds`` (after resampling), ``"reject"`` raises ``AudioError("too_long")``.

    Returns
    -------
    wav : np.ndarray
        float32, shape (num_samples,), at ``target_sr``.
    info : AudioInfo
        The original rate/channels/length and what was changed.

    Example
    -------
    >>> import os, tempfile, numpy as np, soundfile as sf
    >>> path = os.path.join(tempfile.mkdtemp(), "long.wav")
    >>> sf.write(path, np.zeros(16000 * 3, np.float32), 16000)
    >>> wav, info = load_audio(path, max_seconds=2.0)
    >>> len(wav), info.truncated
    (32000, True)
    >>> load_audio(path, max_seconds=2.0, long_audio="reject")
    Traceback (most recent call last):
    ...
    diffa.data.audio.AudioError: /...long.wav: 3.00 s is longer than max_seconds=2.0;
    shorten the file or choose long_audio='truncate'
    """
    if long_audio not in LONG_AUDIO_POLICIES:
        raise ValueError(f"long_audio must be one of {LONG_AUDIO_POLICIES}, got {long_audio!r}")
    if max_seconds is not None and max_seconds <= 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds}")
    if path.rstrip().endswith("|"):
        raise AudioError(
            "unreadable", f"{path}: pipe commands are not supported; write the audio to files"
        )
    if not os.path.exists(path):
        raise AudioError("missing", f"{path} does not exist")
    try:
        data, sample_rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (soundfile.SoundFileError, OSError) as err:
        raise AudioError("unreadable", f"{path}: cannot be read as audio ({err})") from None
    num_samples, channels = data.shape
    if num_samples == 0:
        raise AudioError("empty", f"{path}: the file has no samples")
    duration = num_samples / sample_rate
    too_long = max_seconds is not None and duration > max_seconds
    if too_long and long_audio == "reject":
        raise AudioError(
            "too_long",
            f"{path}: {duration:.2f} s is longer than max_seconds={max_seconds}; shorten the file "
            "or choose long_audio='truncate'",
        )
    wav = data.mean(axis=1, dtype=np.float32) if channels > 1 else data[:, 0]
    if sample_rate != target_sr:
        wav = torchaudio.functional.resample(
            torch.from_numpy(np.ascontiguousarray(wav)), sample_rate, target_sr
        ).numpy()
    if too_long:
        wav = wav[: int(round(max_seconds * target_sr))]
    info = AudioInfo(
        sample_rate=sample_rate,
        channels=channels,
        num_samples=num_samples,
        resampled=sample_rate != target_sr,
        downmixed=channels > 1,
        truncated=too_long,
    )
    return np.ascontiguousarray(wav, dtype=np.float32), info
