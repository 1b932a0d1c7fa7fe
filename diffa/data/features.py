"""Whisper's log-mel spectrogram, for batches of variable-length 16 kHz waveforms.

The computation is Whisper's (and ``transformers.WhisperFeatureExtractor``'s): a 400-point STFT
(25 ms) with a periodic Hann window every 160 samples (10 ms), centred frames with reflect padding,
the power spectrum without the STFT's last frame, a Slaney-scale, Slaney-normalised mel filterbank
over 0-8 kHz (80 bins for Whisper v1/v2, 128 for large-v3), ``log10(max(mel, 1e-10))``, a floor at
the utterance's maximum minus 8, and ``(x + 4) / 4``.

Whisper pads every input with zeros to 30 s before the STFT; here an utterance of N samples gives
its own ``T = ceil(N / 160)`` frames (those centred inside it: the frames the attention mask of
``WhisperFeatureExtractor`` marks, whose sum the authors' encoder wrapper takes as the length),
equal to the first T frames Whisper computes for it. Two things make them equal over *all* T
frames, not only away from the end:

* the signal is extended the way Whisper extends it: zeros up to ``min(N + 400, 30 s)`` samples
  (never below N), then the STFT's reflect padding; a frame near the end therefore sees the zeros
  Whisper's padding puts there, and a clip of exactly 30 s sees the reflection Whisper gives it;
* the maximum used for the floor is taken over every frame Whisper computes that touches the
  signal, including the one or two frames after the last one whose windows still overlap the
  last samples.

For N > 30 s the result equals ``WhisperFeatureExtractor(..., truncation=False)`` (T = N // 160,
the frames it computes). Padding frames of a batch (beyond ``feat_lens``) are 0.

Example
-------
>>> import torch
>>> fbank = WhisperLogMel(n_mels=80)
>>> wavs = torch.randn(2, 16000) * 0.1
>>> feats, feat_lens = fbank(wavs, torch.tensor([16000, 8050]))
>>> feats.shape, feat_lens.tolist()
(torch.Size([2, 100, 80]), [100, 51])
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from transformers.audio_utils import mel_filter_bank

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
CHUNK_SAMPLES = 30 * SAMPLE_RATE


class WhisperLogMel(torch.nn.Module):
    """Whisper-compatible log-mel features of a batch of 16 kHz waveforms.

    Arguments
    ---------
    n_mels : int
        Number of mel bins: 80 (Whisper v1/v2, DIFFA) or 128 (Whisper large-v3, DIFFA-2).

    Example
    -------
    >>> import torch
    >>> fbank = WhisperLogMel(n_mels=128)
    >>> feats, feat_lens = fbank(torch.randn(1, 4000))
    >>> feats.shape, feat_lens
    (torch.Size([1, 25, 128]), tensor([25]))
    >>> bool(feats.max() - feats.min() <= 2.0)
    True
    """

    def __init__(self, n_mels: int = 80):
        super().__init__()
        if n_mels < 1:
            raise ValueError(f"n_mels must be positive, got {n_mels}")
        self.n_mels = n_mels
        filters = mel_filter_bank(
            num_frequency_bins=N_FFT // 2 + 1,
            num_mel_filters=n_mels,
            min_frequency=0.0,
            max_frequency=SAMPLE_RATE / 2,
            sampling_rate=SAMPLE_RATE,
            norm="slaney",
            mel_scale="slaney",
        )
        self.register_buffer(
            "filters", torch.from_numpy(filters).to(torch.float32), persistent=False
        )
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)

    def forward(
        self, wavs: torch.Tensor, lens: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Compute the features.

        Arguments
        ---------
        wavs : torch.Tensor
            (batch, samples) waveforms at 16 kHz, zero-padded on the right.
        lens : torch.Tensor, optional
            (batch,) number of real samples per row; None means every row is full.

        Returns
        -------
        feats : torch.Tensor
            (batch, frames, n_mels) float32, frames = max(feat_lens); padding frames are 0.
        feat_lens : torch.Tensor
            (batch,) LongTensor, ``ceil(lens / 160)`` (``lens // 160`` past 30 s).
        """
        if wavs.dim() != 2:
            raise ValueError(f"wavs must be (batch, samples), got shape {tuple(wavs.shape)}")
        batch, width = wavs.shape
        device = wavs.device
        if lens is None:
            lens = torch.full((batch,), width, dtype=torch.long, device=device)
        lens = lens.to(device=device, dtype=torch.long)
        if lens.shape != (batch,) or bool((lens < 0).any()) or bool((lens > width).any()):
            raise ValueError(f"lens must be (batch,) in [0, {width}], got {lens.tolist()}")
        # Extended length per row: zeros to min(N + n_fft, 30 s), never less than N.
        ext = torch.maximum(lens, (lens + N_FFT).clamp(max=CHUNK_SAMPLES))
        half = N_FFT // 2
        pos = torch.arange(-half, int(ext.max()) + half, device=device).expand(batch, -1)
        end = ext[:, None] - 1
        pos = torch.where(pos > end, 2 * end - pos, pos.abs())  # reflect at both ends
        inside = (pos >= 0) & (pos < lens[:, None])
        source = wavs.to(torch.float32) if width else wavs.new_zeros(batch, 1, dtype=torch.float32)
        signal = source.gather(1, pos.clamp(0, source.shape[1] - 1)) * inside
        spec = torch.stft(
            signal, N_FFT, HOP_LENGTH, window=self.window, center=False, return_complex=True
        )
        power = spec[..., :-1].abs() ** 2  # (batch, freq, frames): Whisper drops the last frame
        log_mel = (power.transpose(1, 2) @ self.filters).clamp(min=1e-10).log10()
        frames = torch.arange(log_mel.shape[1], device=device)
        computed = frames[None, :] < (ext // HOP_LENGTH)[:, None]
        peak = log_mel.masked_fill(~computed[..., None], float("-inf")).amax(dim=(1, 2))
        feats = (torch.maximum(log_mel, peak[:, None, None] - 8.0) + 4.0) / 4.0
        # frames centred inside the clip, at most those computed (past 30 s: N // 160)
        feat_lens = torch.minimum(-(-lens // HOP_LENGTH), ext // HOP_LENGTH)
        num_frames = int(feat_lens.max())
        valid = frames[None, :num_frames] < feat_lens[:, None]
        return feats[:, :num_frames].masked_fill(~valid[..., None], 0.0), feat_lens
