"""A frozen Whisper encoder that returns the last hidden state, tapped hidden states and lengths.

DIFFA reads Whisper's encoder twice: the semantic adapter reads the final (layer-normed) hidden
state, the acoustic adapter reads a few intermediate ones. :class:`WhisperEncoder` wraps
``transformers``' own ``WhisperEncoder`` (so weights and parameter names are the official ones) and
runs its sub-modules itself, which gives two input modes:

* ``pad_to_30s=True`` (what the released DIFFA / DIFFA-2 checkpoints saw): every utterance is
  padded to 30 s (3000 frames) with the log-mel value of digital silence, ``feats.max() - 2.0`` per
  utterance (Whisper's feature extractor clamps the log-mel at ``max - 8`` before the
  ``(x + 4) / 4`` scaling, so zero samples land exactly 2.0 below the maximum). Frames past 30 s
  are cut. Every output frame attends to the whole 30 s: this is bit-for-bit the computation of
  ``transformers``' ``WhisperEncoder.forward``.
* ``pad_to_30s=False`` (fast, for new training): the batch is only as long as its longest
  utterance; padded frames are zeroed before each convolution and masked as attention keys, so the
  real frames of an utterance do not depend on what else is in the batch.

Hidden states are numbered like ``transformers``' ``hidden_states`` tuple: 0 is the embedding
output (convolutions + positional embeddings), ``i`` is the output of layer ``i - 1`` and
``n_layers`` is the final layer-normed output. The authors' taps (2, 5, 8, 11 for Whisper-small;
3, 7, ..., 31 for Whisper-large-v3) index that tuple.

Output lengths are ``(feat_lens - 1) // 2 + 1`` (the stride-2 convolution) in both modes: with
30-s padding the hidden states still have 1500 frames, but only the first ``lens`` come from
speech (the authors' encoder wrapper returns the same ``output_lengths`` and cuts the last hidden
state there before the semantic adapter).

Example
-------
>>> from transformers import WhisperConfig
>>> cfg = WhisperConfig(d_model=16, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=32,
...                     num_mel_bins=8, max_source_positions=1500)
>>> enc = WhisperEncoder(cfg, taps=(0, 2), pad_to_30s=False)
>>> out = enc(torch.randn(2, 7, 8), torch.tensor([7, 4]))
>>> out.last_hidden.shape, [t.shape for t in out.taps], out.lens.tolist()
(torch.Size([2, 4, 16]), [torch.Size([2, 4, 16]), torch.Size([2, 4, 16])], [4, 2])
>>> torch.equal(out.taps[1], out.last_hidden)
True
>>> WhisperEncoder(cfg, taps=(1,), pad_to_30s=True)(torch.randn(1, 7, 8), torch.tensor([7])).last_hidden.shape
torch.Size([1, 1500, 16])
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import WhisperConfig
from transformers.models.whisper.modeling_whisper import WhisperEncoder as HFWhisperEncoder

from diffa.files import atomic_save, atomic_save_text, open_safetensors, read_json_object, read_shards
from diffa.nnet.llada import READ_ERROR_REMEDY

logger = logging.getLogger(__name__)

# Key prefixes of the encoder inside a Whisper checkpoint: WhisperForConditionalGeneration (the
# official openai/whisper-* layout) first, then a bare WhisperModel saved by transformers.
ENCODER_PREFIXES = ("model.encoder.", "encoder.")

# Whisper's log-mel of zero samples sits this far below the utterance maximum (its clamp at
# max - 8 in log10 units, scaled by 1/4), but never below log10(1e-10) scaled: (-10 + 4) / 4.
SILENCE_BELOW_MAX = 2.0
SILENCE_FLOOR = -1.5


class EncoderOutput(NamedTuple):
    """What :class:`WhisperEncoder` returns.

    Arguments
    ---------
    last_hidden : torch.Tensor
        Final layer-normed hidden state, (batch, time', d_model).
    taps : list of torch.Tensor
        The requested hidden states, each (batch, time', d_model), in the order of ``taps``.
    lens : torch.Tensor
        Number of frames of ``last_hidden`` that come from speech, (batch,) long.

    Example
    -------
    >>> EncoderOutput(torch.zeros(1, 2, 3), [], torch.tensor([2])).lens
    tensor([2])
    """

    last_hidden: torch.Tensor
    taps: List[torch.Tensor]
    lens: torch.Tensor


class WhisperEncoder(torch.nn.Module):
    """Frozen Whisper encoder with tapped hidden states (see the module docstring).

    The parameters never require gradients and the module stays in eval mode even when a parent
    calls ``.train()``. Its state-dict keys are the official encoder keys under ``encoder.``
    (``model.encoder.conv1.weight`` in a Whisper checkpoint is ``encoder.conv1.weight`` here).

    Arguments
    ---------
    config : transformers.WhisperConfig
        The Whisper configuration (the encoder fields are used).
    taps : sequence of int
        Hidden-state indices to return, each in ``[0, n_layers]``.
    pad_to_30s : bool
        Pad (or cut) every input to 30 s as Whisper was trained, instead of running on the batch's
        own length.

    Example
    -------
    >>> from transformers import WhisperConfig
    >>> cfg = WhisperConfig(d_model=16, encoder_layers=2, encoder_attention_heads=2,
    ...                     encoder_ffn_dim=32, num_mel_bins=8, max_source_positions=1500)
    >>> enc = WhisperEncoder(cfg, taps=(1,), pad_to_30s=False)
    >>> enc.output_dim, enc.n_heads, enc.n_mels, enc.n_layers, enc.max_frames
    (16, 2, 8, 2, 3000)
    >>> enc.train().training, any(p.requires_grad for p in enc.parameters())
    (False, False)
    """

    def __init__(self, config: WhisperConfig, taps: Sequence[int] = (), pad_to_30s: bool = True):
        super().__init__()
        taps = tuple(int(t) for t in taps)
        bad = [t for t in taps if not 0 <= t <= config.encoder_layers]
        if bad:
            raise ValueError(
                f"Whisper taps {bad} out of range: hidden states are numbered 0 (embedding output) to "
                f"{config.encoder_layers} (final output) for a {config.encoder_layers}-layer encoder"
            )
        self.taps = taps
        self.pad_to_30s = bool(pad_to_30s)
        self.encoder = HFWhisperEncoder(config)
        self.requires_grad_(False)
        self.train(False)

    # ------------------------------------------------------------------ properties
    @property
    def config(self) -> WhisperConfig:
        """The ``transformers.WhisperConfig`` of the encoder."""
        return self.encoder.config

    @property
    def output_dim(self) -> int:
        """Width of the hidden states (``d_model``)."""
        return self.config.d_model

    @property
    def n_heads(self) -> int:
        """Attention heads per encoder layer."""
        return self.config.encoder_attention_heads

    @property
    def n_mels(self) -> int:
        """Mel bins of the input features."""
        return self.config.num_mel_bins

    @property
    def n_layers(self) -> int:
        """Number of encoder layers (hidden states are numbered 0..n_layers)."""
        return self.config.encoder_layers

    @property
    def max_frames(self) -> int:
        """Input frames covered by the positional table (3000 = 30 s for every Whisper)."""
        return 2 * self.config.max_source_positions

    def train(self, mode: bool = True) -> "WhisperEncoder":
        """Stay in eval mode whatever ``mode`` says: the encoder is frozen (no dropout)."""
        return super().train(False)

    # ------------------------------------------------------------------ forward
    def forward(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> EncoderOutput:
        """Encode a batch of log-mel features.

        Arguments
        ---------
        feats : torch.Tensor
            Whisper log-mel features, (batch, time, n_mels); frames at or past ``feat_lens`` are
            padding and their values are ignored.
        feat_lens : torch.Tensor
            Number of real frames per utterance, (batch,) long, each >= 1.

        Returns
        -------
        EncoderOutput
            ``last_hidden`` (batch, time', d_model) with time' = 1500 when padding to 30 s, else
            ``(time - 1) // 2 + 1``; ``taps``; ``lens = (feat_lens - 1) // 2 + 1``.
        """
        if feats.dim() != 3 or feats.shape[-1] != self.n_mels:
            raise ValueError(f"Whisper encoder: feats must be (batch, time, {self.n_mels}), got {tuple(feats.shape)}; "
                             f"this encoder takes {self.n_mels} log-mel bins: extract the features with --n_mels "
                             f"{self.n_mels} (recipe stage 2)")
        if feat_lens.shape != feats.shape[:1]:
            raise ValueError(f"Whisper encoder: feat_lens must be ({feats.shape[0]},), got {tuple(feat_lens.shape)}")
        if bool((feat_lens < 1).any()):
            raise ValueError(
                f"Whisper encoder: every utterance needs at least one frame, got feat_lens {feat_lens.tolist()}"
            )
        with torch.no_grad():
            return self._encode(feats, feat_lens)

    def _encode(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> EncoderOutput:
        enc = self.encoder
        if feats.shape[1] > self.max_frames:
            logger.warning(
                "Whisper encoder: cutting %d-frame input to %d frames (30 s)", feats.shape[1], self.max_frames
            )
            feats = feats[:, : self.max_frames]
        feat_lens = feat_lens.to(feats.device).clamp(max=feats.shape[1])
        real = torch.arange(feats.shape[1], device=feats.device) < feat_lens[:, None]  # (B, T)
        if self.pad_to_30s:
            feats = pad_with_silence(feats, real, self.max_frames)
            real = None  # every frame of the 30 s is seen, as in Whisper's own forward
        else:
            feats = feats.masked_fill(~real[..., None], 0.0)

        x = F.gelu(enc.conv1(feats.transpose(1, 2).to(enc.conv1.weight.dtype)))
        if real is not None:
            # conv2 must see zeros past the end, like the zero padding of an unpadded utterance
            x = x.masked_fill(~real[:, None, :], 0.0)
        x = F.gelu(enc.conv2(x)).transpose(1, 2)
        x = x + enc.embed_positions.weight[: x.shape[1]]
        lens = (feat_lens - 1) // 2 + 1

        mask = None
        if real is not None:
            keep = torch.arange(x.shape[1], device=x.device) < lens[:, None]
            mask = torch.zeros(keep.shape, dtype=x.dtype, device=x.device)
            mask = mask.masked_fill(~keep, torch.finfo(x.dtype).min)[:, None, None, :]

        wanted = set(self.taps)
        kept: Dict[int, torch.Tensor] = {}
        for i, layer in enumerate(enc.layers):
            if i in wanted:
                kept[i] = x
            x = layer(x, mask)
        x = enc.layer_norm(x)
        kept[self.n_layers] = x
        return EncoderOutput(last_hidden=x, taps=[kept[t] for t in self.taps], lens=lens)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        path: Union[str, Path],
        taps: Sequence[int] = (),
        pad_to_30s: bool = True,
        dtype: Optional[torch.dtype] = None,
        device: Optional[Union[str, torch.device]] = None,
    ) -> "WhisperEncoder":
        """Load the encoder of a full Whisper checkpoint directory (decoder tensors are not read).

        Arguments
        ---------
        path : str or Path
            A Whisper checkpoint directory: ``config.json`` and ``model.safetensors`` (or
            ``model.safetensors.index.json`` + shards), as in ``openai/whisper-small``.
        taps : sequence of int
            Hidden-state indices to return.
        pad_to_30s : bool
            Input mode (see the class docstring).
        dtype : torch.dtype, optional
            Parameter dtype; None keeps the checkpoint's (float16 for ``openai/whisper-large-v3``).
        device : str or torch.device, optional
            Where the parameters live; default CPU.

        Returns
        -------
        WhisperEncoder
            Frozen, in eval mode.

        Example
        -------
        >>> import tempfile
        >>> from transformers import WhisperConfig, WhisperForConditionalGeneration
        >>> cfg = WhisperConfig(d_model=16, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=32,
        ...                     decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=32, num_mel_bins=8,
        ...                     vocab_size=60, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        ...                     decoder_start_token_id=3, max_source_positions=1500, max_target_positions=16)
        >>> d = tempfile.mkdtemp()
        >>> WhisperForConditionalGeneration(cfg).save_pretrained(d)
        >>> enc = WhisperEncoder.from_pretrained(d, taps=(1,))
        >>> sorted(enc.state_dict())[:2]
        ['encoder.conv1.bias', 'encoder.conv1.weight']
        """
        path = Path(path)
        config_file = path / "config.json"
        if not config_file.is_file():
            raise FileNotFoundError(
                f"{config_file}: not found; WhisperEncoder.from_pretrained expects a Whisper checkpoint directory "
                "(config.json + model.safetensors), e.g. a download of openai/whisper-small"
            )
        model_type = read_json_object(config_file, READ_ERROR_REMEDY).get("model_type")
        if model_type != "whisper":
            raise ValueError(f"{config_file}: model_type is {model_type!r}, expected 'whisper'")
        config = WhisperConfig.from_pretrained(str(path))
        with torch.device("meta"):
            model = cls(config, taps=taps, pad_to_30s=pad_to_30s)
        expected = {k: tuple(v.shape) for k, v in model.encoder.state_dict().items()}
        state = read_encoder_tensors(path, expected, dtype, device or "cpu")
        model.encoder.load_state_dict(state, assign=True)
        model.requires_grad_(False)
        logger.info("loaded Whisper encoder from %s (%d layers, d_model %d)", path, model.n_layers, model.output_dim)
        return model

    def save_pretrained(self, path: Union[str, Path]) -> None:
        """Write ``config.json`` + ``model.safetensors`` holding the encoder under the official
        ``model.encoder.*`` keys, so :meth:`from_pretrained` (or any Whisper loader that tolerates a
        missing decoder) reads it back. Each file is written to a temporary name and renamed.

        Example
        -------
        >>> import tempfile
        >>> from transformers import WhisperConfig
        >>> cfg = WhisperConfig(d_model=16, encoder_layers=1, encoder_attention_heads=2,
        ...                     encoder_ffn_dim=32, num_mel_bins=8, max_source_positions=1500)
        >>> enc, d = WhisperEncoder(cfg), tempfile.mkdtemp()
        >>> enc.save_pretrained(d)
        >>> again = WhisperEncoder.from_pretrained(d)
        >>> all(torch.equal(a, b) for a, b in zip(enc.state_dict().values(), again.state_dict().values()))
        True
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {f"model.{k}": v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
        atomic_save(path / "model.safetensors", lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
        atomic_save_text(path / "config.json", self.config.to_json_string())


def pad_with_silence(feats: torch.Tensor, real: torch.Tensor, n_frames: int) -> torch.Tensor:
    """Pad log-mel features to ``n_frames`` with Whisper's value for digital silence.

    Frames that are not ``real`` (batch padding and the added frames) get ``max(max - 2.0, -1.5)``
    where ``max`` is the utterance's largest real log-mel value: what ``WhisperFeatureExtractor``
    produces for zero samples appended to the waveform. (Whisper's first one or two frames after
    the stored ones still overlap the clip's last samples, and its maximum may lie there; stored
    features do not hold them, so they get the silence value too.)

    Arguments
    ---------
    feats : torch.Tensor
        Log-mel features, (batch, time, n_mels), time <= n_frames.
    real : torch.Tensor
        Bool (batch, time), True on real frames; each row has at least one.
    n_frames : int
        Output length.

    Returns
    -------
    torch.Tensor
        (batch, n_frames, n_mels).

    Example
    -------
    >>> feats = torch.tensor([[[0.5, 1.0], [9.0, 9.0]]])
    >>> pad_with_silence(feats, torch.tensor([[True, False]]), 3)
    tensor([[[ 0.5000,  1.0000],
             [-1.0000, -1.0000],
             [-1.0000, -1.0000]]])
    >>> pad_with_silence(torch.full((1, 1, 2), -0.9), torch.tensor([[True]]), 2)[0, 1]  # a quiet clip
    tensor([-1.5000, -1.5000])
    """
    peak = feats.masked_fill(~real[..., None], float("-inf")).amax(dim=(1, 2))
    floor = (peak - SILENCE_BELOW_MAX).clamp(min=SILENCE_FLOOR)
    extra = n_frames - feats.shape[1]
    feats = F.pad(feats, (0, 0, 0, extra))
    real = F.pad(real, (0, extra), value=False)
    return torch.where(real[..., None], feats, floor[:, None, None].to(feats.dtype))


def read_encoder_tensors(
    path: Path, expected: Dict[str, tuple], dtype: Optional[torch.dtype], device: Union[str, torch.device]
) -> Dict[str, torch.Tensor]:
    """Read the encoder tensors of a Whisper checkpoint directory, checking names and shapes.

    Arguments
    ---------
    path : Path
        Directory with ``model.safetensors`` or ``model.safetensors.index.json`` + shards.
    expected : dict
        Encoder state-dict key (without prefix) -> shape.
    dtype : torch.dtype or None
        Floating tensors are cast to it; None keeps the stored dtype.
    device : str or torch.device
        Where the tensors are loaded.

    Returns
    -------
    dict
        Key (without prefix) -> tensor, exactly the keys of ``expected``.

    Example
    -------
    >>> import tempfile
    >>> from safetensors.torch import save_file
    >>> d = Path(tempfile.mkdtemp())
    >>> save_file({"model.encoder.w": torch.ones(2), "model.decoder.w": torch.ones(3)}, str(d / "model.safetensors"))
    >>> read_encoder_tensors(d, {"w": (2,)}, torch.float16, "cpu")
    {'w': tensor([1., 1.], dtype=torch.float16)}
    """
    single, index = path / "model.safetensors", path / "model.safetensors.index.json"
    if single.is_file():
        with open_safetensors(single, READ_ERROR_REMEDY) as f:
            where = {k: single for k in f.keys()}
    elif index.is_file():
        where = {k: shard for shard, keys in read_shards(index, READ_ERROR_REMEDY).items() for k in keys}
    else:
        raise FileNotFoundError(
            f"{path}: neither model.safetensors nor model.safetensors.index.json found; "
            "convert pytorch_model.bin checkpoints to safetensors first"
        )
    source = single if single.is_file() else index
    prefix = next((p for p in ENCODER_PREFIXES if any(k.startswith(p) for k in where)), None)
    if prefix is None:
        raise ValueError(f"{source}: no Whisper encoder tensors (no key starts with {' or '.join(ENCODER_PREFIXES)})")
    found = {k[len(prefix):] for k in where if k.startswith(prefix)}
    missing = sorted(set(expected) - found)
    if missing:
        raise ValueError(
            f"{source}: encoder tensor '{prefix}{missing[0]}' is missing ({len(missing)} missing in all); "
            f"the checkpoint does not match {path / 'config.json'}"
        )
    unknown = sorted(found - set(expected))
    if unknown:
        raise ValueError(
            f"{source}: unexpected encoder tensor '{prefix}{unknown[0]}' ({len(unknown)} in all); "
            f"the checkpoint does not match {path / 'config.json'}"
        )
    state: Dict[str, torch.Tensor] = {}
    for file in sorted(set(where[prefix + k] for k in expected)):
        with open_safetensors(file, READ_ERROR_REMEDY, device) as f:
            for key in expected:
                if where[prefix + key] != file:
                    continue
                shape = tuple(f.get_slice(prefix + key).get_shape())
                if shape != expected[key]:
                    raise ValueError(
                        f"{file}: tensor '{prefix}{key}' has shape {shape} but {path / 'config.json'} "
                        f"implies {expected[key]}"
                    )
                tensor = f.get_tensor(prefix + key)
                state[key] = tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor
    return state
