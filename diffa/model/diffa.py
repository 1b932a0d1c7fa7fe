"""DIFFA: frozen Whisper encoder + semantic/acoustic adapters + masked-diffusion LLaDA.

The model speaks *text coordinates* to the outside world: callers pass token ids
with the index ``audio_pos`` where the audio belongs, and get logits for exactly those token
positions back. The audio block is spliced in and cut out again inside, vectorised over the batch
(:func:`diffa.model.splice.splice_audio`).

Audio block per layout (as in the authors' released code):

* ``stage1``: [20 learned prompts ; semantic tokens] (curriculum stage 1);
* ``dual``:   [64 acoustic tokens ; semantic tokens] (every later stage).

A DIFFA directory (``save_pretrained`` / ``from_pretrained``) is self-describing::

    config.json              DIFFAConfig
    adapters.safetensors     semantic.*, acoustic.*, prompts.weight
    lora.safetensors         unmerged LoRA weights (only when config.lora is set)
    encoder/                 Whisper config.json + model.safetensors (model.encoder.* keys)
    llm/                     official LLaDA directory (config.json + safetensors)
    tokenizer/               the tokenizer files (LLaDA tokenizer.json or SentencePiece spm.model)

Example
-------
>>> import torch
>>> model = DIFFA(tiny_config())
>>> feats, feat_lens = torch.randn(2, 40, 16), torch.tensor([40, 24])
>>> ids = torch.randint(0, 90, (2, 7))
>>> model(feats, feat_lens, ids, audio_pos=torch.tensor([2, 3])).shape
torch.Size([2, 7, 100])
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Optional, Tuple, Union

import torch
from safetensors.torch import save_file
from transformers import WhisperConfig

from diffa.model.config import DIFFAConfig
from diffa.model.splice import splice_audio
from diffa.nnet.adapters import AcousticAdapter, SemanticAdapter
from diffa.files import atomic_save, atomic_save_text, default_mode, load_safetensors, read_json_object
from diffa.nnet.llada import LLaDAConfig, LLaDAModel
from diffa.nnet.lora import LoRAConfig, add_lora, base_state_dict, has_lora, load_lora_state_dict, lora_state_dict, merge_lora
from diffa.nnet.whisper import WhisperEncoder
from diffa.text.tokenizer import load_tokenizer

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
ADAPTER_PREFIXES = ("semantic.", "acoustic.", "prompts.")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "spm.model", "spm.vocab")
# what to do about a file of a DIFFA directory that cannot be read
REWRITE = "save or export the model again (or rerun the training stage that wrote it)"


def holds_tokenizer(path: PathLike) -> bool:
    """Whether directory ``path`` holds a tokenizer (LLaDA's tokenizer.json or SentencePiece's spm.model).

    Example
    -------
    >>> import tempfile
    >>> holds_tokenizer(tempfile.mkdtemp())
    False
    """
    return (Path(path) / "tokenizer.json").is_file() or (Path(path) / "spm.model").is_file()


def resolve_model_dir(path: PathLike) -> Path:
    """``path`` when it holds ``config.json``, else ``path/final`` when that does, else ``path``.

    Example
    -------
    >>> import os, tempfile
    >>> exp = tempfile.mkdtemp(); os.makedirs(os.path.join(exp, "final"))
    >>> _ = open(os.path.join(exp, "final", "config.json"), "w").write("{}")
    >>> resolve_model_dir(exp).name
    'final'
    """
    path = Path(path)
    if not (path / "config.json").is_file() and (path / "final" / "config.json").is_file():
        return path / "final"
    return path


def _link_target(source: Path, model_dir: Path) -> str:
    """What a saved model's link to a frozen part says: ``source`` relative to ``model_dir`` when it
    lies in the same experiment tree (at most three levels up: exp/<stage>/final/encoder ->
    ../../pretrained/whisper), so a recipe directory moved or mounted elsewhere keeps its models;
    else the absolute path (a shared /data/models/whisper-large-v3 stays found when the recipe
    moves).

    Example
    -------
    >>> _link_target(Path("/r/exp/pretrained/whisper"), Path("/r/exp/stage4_vrpo/final"))
    '../../pretrained/whisper'
    >>> _link_target(Path("/data/models/llada"), Path("/home/u/egs/diffa2/exp/stage4_vrpo/final"))
    '/data/models/llada'
    """
    relative = os.path.relpath(source, model_dir)
    return relative if Path(relative).parts[:4].count("..") < 4 else str(source)


def _remove(path: Path) -> None:
    """Delete ``path`` if it is there: a link itself (not its target), a directory with its content.

    Example
    -------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> (d / "sub").mkdir(); (d / "link").symlink_to(d / "sub")
    >>> _remove(d / "link"); _remove(d / "sub"); _remove(d / "gone")
    >>> sorted(d.iterdir())
    []
    """
    if path.is_symlink():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def tiny_config(layout: str = "dual", vocab: int = 100, d_llm: int = 32, n_mels: int = 16) -> DIFFAConfig:
    """A DIFFA config small enough for examples and unit tests (random weights).

    Example
    -------
    >>> tiny_config().taps
    [1, 2]
    """
    encoder = WhisperConfig(
        num_mel_bins=n_mels, d_model=16, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=32,
        decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=32, max_source_positions=1500,
        max_target_positions=16, vocab_size=vocab, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        decoder_start_token_id=3,
    ).to_dict()
    llm = LLaDAConfig(
        d_model=d_llm, n_layers=2, n_heads=2, n_kv_heads=2, mlp_hidden_size=64, vocab_size=vocab,
        embedding_size=vocab, mask_token_id=vocab - 1, eos_token_id=vocab - 2, pad_token_id=vocab - 2,
    ).to_dict()
    return DIFFAConfig(encoder=encoder, llm=llm, taps=[1, 2], layout=layout, n_prompts=3, n_queries=4, qformer_ffn=32)


def check_frozen_links(path: Path) -> None:
    """Raise FileNotFoundError explaining a frozen part (``encoder``, ``llm``) of the DIFFA directory
    ``path`` that is a link to a directory which no longer exists (moved or deleted).

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp())
    >>> (path / "llm").symlink_to(path / "gone")
    >>> check_frozen_links(path)
    Traceback (most recent call last):
     ...
    FileNotFoundError: .../llm is a link to .../gone, which does not exist (moved or deleted?): ...
    """
    dangling = [path / p for p in ("encoder", "llm") if (path / p).is_symlink() and not (path / p).exists()]
    if dangling:
        links = "; ".join(f"{link} is a link to {os.path.normpath(link.parent.resolve() / os.readlink(link))}, "
                          "which does not exist" for link in dangling)
        raise FileNotFoundError(
            f"{links} (moved or deleted?): put the directory back or point the link at its new place "
            "(ln -sfn NEW LINK), then make a self-contained copy with python -m diffa.bin.export"
        )


class DIFFA(torch.nn.Module):
    """Audio-conditioned masked-diffusion LM (see module docstring).

    Arguments
    ---------
    config : DIFFAConfig
        What to build.
    encoder : WhisperEncoder, optional
        A loaded encoder (else built from ``config.encoder`` with random weights).
    llm : LLaDAModel, optional
        A loaded LLaDA (else built from ``config.llm`` with random weights).

    Example
    -------
    >>> import tempfile
    >>> model = DIFFA(tiny_config("stage1")).eval()
    >>> audio, audio_lens = model.encode_audio(torch.randn(2, 40, 16), torch.tensor([40, 24]))
    >>> audio.shape, audio_lens.tolist()          # 3 prompts + one semantic token per 8 log-mel frames
    (torch.Size([2, 8, 32]), [8, 6])
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     model.save_pretrained(f"{tmp}/m")
    ...     again = DIFFA.from_pretrained(f"{tmp}/m")
    ...     sorted(os.listdir(f"{tmp}/m"))
    ['adapters.safetensors', 'config.json', 'encoder', 'llm']
    >>> again.config == model.config, torch.equal(again.prompts.weight, model.prompts.weight)
    (True, True)
    """

    def __init__(self, config: DIFFAConfig, encoder: Optional[WhisperEncoder] = None, llm: Optional[LLaDAModel] = None):
        super().__init__()
        self.config = config
        whisper_cfg = WhisperConfig(**config.encoder)
        self.encoder = encoder or WhisperEncoder(whisper_cfg, taps=config.taps, pad_to_30s=config.pad_to_30s)
        self.llm = llm or LLaDAModel(LLaDAConfig.from_dict(config.llm))
        d_in, d_llm = whisper_cfg.d_model, self.llm.config.d_model
        self.semantic = SemanticAdapter(d_in, d_llm)
        self.acoustic = AcousticAdapter(
            d_in, d_llm, n_taps=len(config.taps), n_heads=whisper_cfg.encoder_attention_heads,
            n_queries=config.n_queries, ffn=config.qformer_ffn, n_layers=config.qformer_layers,
            dropout=config.qformer_dropout,
        )
        self.prompts = torch.nn.Embedding(config.n_prompts, d_llm)
        if config.lora is not None:
            add_lora(self.llm, LoRAConfig.from_dict(config.lora))
        # official directories the frozen encoder / LLM were read from (see save_pretrained)
        self.sources: dict = {}

    # ------------------------------------------------------------------ construction / io
    @classmethod
    def from_components(
        cls,
        config: DIFFAConfig,
        whisper_dir: PathLike,
        llada_dir: PathLike,
        dtype: Optional[torch.dtype] = None,
        device: Optional[Union[str, torch.device]] = None,
        tokenizer_dir: Optional[PathLike] = None,
        audio_dtype: Optional[torch.dtype] = None,
    ) -> "DIFFA":
        """Pretrained Whisper + pretrained LLaDA + freshly initialised adapters (stage-1 start).

        The tokenizer is ``tokenizer_dir`` or, when not given, the one in ``llada_dir`` (official
        LLaDA directories hold ``tokenizer.json``); :meth:`save_pretrained` copies it along.

        The LLM is read in ``dtype``, the encoder in ``audio_dtype`` (default: ``dtype``); None
        keeps the stored dtype. The adapters and prompts then take ``audio_dtype`` too
        (:meth:`set_dtypes`).

        ``config.encoder`` / ``config.llm`` are replaced by the loaded models' configs. Like every
        loader here, it returns the model in eval mode (call ``.train()`` to train).
        """
        audio_dtype = audio_dtype or dtype
        encoder = WhisperEncoder.from_pretrained(whisper_dir, taps=config.taps, pad_to_30s=config.pad_to_30s, dtype=audio_dtype, device=device)
        llm = LLaDAModel.from_pretrained(llada_dir, dtype=dtype, device=device)
        config.encoder = encoder.config.to_dict()
        config.llm = llm.config.to_dict()
        model = cls(config, encoder=encoder, llm=llm)
        model.sources = {"encoder": Path(whisper_dir).resolve(), "llm": Path(llada_dir).resolve()}
        tokenizer = Path(tokenizer_dir) if tokenizer_dir is not None else Path(llada_dir)
        if holds_tokenizer(tokenizer):
            model.set_tokenizer(tokenizer)
        return model.to(device or "cpu").set_dtypes(dtype, audio_dtype).eval()

    @classmethod
    def from_pretrained(
        cls,
        path: PathLike,
        dtype: Optional[torch.dtype] = None,
        device: Optional[Union[str, torch.device]] = None,
        audio_dtype: Optional[torch.dtype] = None,
    ) -> "DIFFA":
        """Load a directory written by :meth:`save_pretrained` (no training code needed).

        The LLM (and its LoRA) is read in ``dtype``, the encoder, adapters and prompts in
        ``audio_dtype`` (default: ``dtype``); None keeps the stored dtypes.
        """
        path = Path(path)
        check_frozen_links(path)
        missing = [p for p in ("config.json", "adapters.safetensors", "encoder", "llm") if not (path / p).exists()]
        if missing:
            raise FileNotFoundError(f"{path} is not a DIFFA model directory: missing {', '.join(missing)}: {REWRITE}")
        config_file = path / "config.json"
        config = DIFFAConfig.from_dict(read_json_object(config_file, REWRITE), where=str(config_file))
        lora = config.lora
        config.lora = None  # LoRA is added after the base weights are in place
        tokenizer = path / "tokenizer" if (path / "tokenizer").is_dir() else None
        model = cls.from_components(config, path / "encoder", path / "llm", dtype=dtype, device=device,
                                    tokenizer_dir=tokenizer, audio_dtype=audio_dtype)
        adapters = path / "adapters.safetensors"
        model.load_adapters(load_safetensors(adapters, REWRITE), where=str(adapters))
        if lora is not None:
            model.add_lora(LoRAConfig.from_dict(lora))
            lora_file = path / "lora.safetensors"
            if not lora_file.exists():
                raise FileNotFoundError(f"{path}/config.json declares LoRA but {lora_file} is missing: {REWRITE}")
            load_lora_state_dict(model.llm, load_safetensors(lora_file, REWRITE), where=str(lora_file))
        return model.eval()

    def save_pretrained(self, path: PathLike, merge: bool = False, link_frozen: bool = True) -> None:
        """Write the self-describing directory (module docstring).

        Arguments
        ---------
        path : path
            Target directory (replaced if it exists). Files are written into a temporary sibling
            that is renamed into place at the end, so an interrupted save leaves nothing half
            written behind (a failed one removes the sibling; one killed outright leaves it, and
            the next save to ``path`` removes it). Directories and files get the
            usual permissions under the process umask.
        merge : bool
            Fold LoRA into the LLM weights (export); otherwise LoRA is kept in ``lora.safetensors``.
        link_frozen : bool
            When the encoder or the LLM base is entirely frozen and was read from a directory,
            ``encoder/`` / ``llm/`` become symbolic links to it instead of copies (a training stage
            of DIFFA-2 then writes megabytes, not 16 GB). ``merge`` always writes the LLM. A source
            inside ``path`` itself (re-saving a self-contained model in place) is copied, since the
            old ``path`` is removed.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if merge and has_lora(self.llm):
            merge_lora(self.llm)
            self.config.lora = None
        for stale in path.parent.glob(f".{glob.escape(path.name)}.*"):  # left by a save that was killed
            if stale.is_dir() and not stale.is_symlink():
                logger.warning("%s: removing %s, left by an interrupted save", path, stale)
                _remove(stale)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            os.chmod(tmp, default_mode(directory=True))
            self._write(tmp, merge, link_frozen, replacing=path.resolve())
            if path.exists():
                old = path.with_name(f".{path.name}.old")
                _remove(old)  # left by a save that died before removing it
                path.rename(old)
                try:
                    tmp.rename(path)
                except BaseException:
                    old.rename(path)
                    raise
                try:
                    _remove(old)
                except OSError as err:  # the new directory is in place; the next save removes the rest
                    logger.warning("%s: could not remove the previous version %s: %s", path, old, err)
            else:
                tmp.rename(path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _write(self, tmp: Path, merge: bool, link_frozen: bool, replacing: Path) -> None:
        """Write the files of :meth:`save_pretrained` into the new directory ``tmp``.

        ``replacing`` is the resolved directory that ``tmp`` will replace: frozen parts read from
        inside it are copied, as a link to them would point into the directory being removed.
        """
        atomic_save(tmp / "adapters.safetensors",
                     lambda f: save_file({k: v.contiguous() for k, v in self.adapter_state_dict().items()}, f))
        if has_lora(self.llm):
            atomic_save(tmp / "lora.safetensors",
                         lambda f: save_file({k: v.contiguous() for k, v in lora_state_dict(self.llm).items()}, f))
        base = base_state_dict(self.llm)
        frozen = {
            "encoder": not any(p.requires_grad for p in self.encoder.parameters()),
            "llm": not merge and not any(p.requires_grad for n, p in self.llm.named_parameters() if ".lora_" not in n),
        }
        for part, write in (("encoder", self.encoder.save_pretrained), ("llm", lambda d: self.llm.save_pretrained(d, state_dict=base))):
            source = self.sources.get(part)
            if link_frozen and frozen[part] and source is not None and source.is_dir():
                source = source.resolve()
                if source.is_relative_to(replacing):
                    shutil.copytree(source, tmp / part)
                else:
                    (tmp / part).symlink_to(_link_target(source, replacing), target_is_directory=True)
            else:
                write(tmp / part)
        tokenizer = self.sources.get("tokenizer")
        if tokenizer is not None:
            (tmp / "tokenizer").mkdir()
            for name in TOKENIZER_FILES:
                if (tokenizer / name).is_file():
                    shutil.copy2(tokenizer / name, tmp / "tokenizer" / name)
        atomic_save_text(tmp / "config.json", json.dumps(self.config.to_dict(), indent=2) + "\n")

    def set_dtypes(self, dtype: Optional[torch.dtype], audio_dtype: Optional[torch.dtype] = None) -> "DIFFA":
        """Cast the LLM to ``dtype`` and the audio side (encoder, adapters, stage-1 prompts) to
        ``audio_dtype`` (default: ``dtype``); None leaves a part as it is. Returns the model.

        Audio embeddings are cast to the LLM's embedding dtype where they are spliced in, and the
        encoder casts its features to its own dtype, so the two sides may differ: the authors'
        inference runs the audio side in float32 and LLaDA in bfloat16.

        Example
        -------
        >>> model = DIFFA(tiny_config()).set_dtypes(torch.bfloat16, torch.float32)
        >>> model.llm.dtype, {p.dtype for p in model.encoder.parameters()}, model.prompts.weight.dtype
        (torch.bfloat16, {torch.float32}, torch.float32)
        """
        self.llm.to(dtype=dtype)
        for part in (self.encoder, self.semantic, self.acoustic, self.prompts):
            part.to(dtype=audio_dtype or dtype)
        return self

    def set_tokenizer(self, tokenizer_dir: PathLike) -> None:
        """Make ``tokenizer_dir`` this model's tokenizer (:meth:`save_pretrained` copies it along).

        Example
        -------
        >>> import tempfile
        >>> DIFFA(tiny_config()).set_tokenizer(tempfile.mkdtemp())
        Traceback (most recent call last):
        ...
        FileNotFoundError: /... holds no tokenizer (tokenizer.json or spm.model)
        """
        path = Path(tokenizer_dir)
        if not holds_tokenizer(path):
            raise FileNotFoundError(f"{path} holds no tokenizer (tokenizer.json or spm.model)")
        self.sources["tokenizer"] = path.resolve()

    def load_tokenizer(self):
        """The tokenizer this model was built or loaded with (see :mod:`diffa.text.tokenizer`)."""
        if "tokenizer" not in self.sources:
            raise FileNotFoundError("this DIFFA model has no tokenizer: build it with tokenizer_dir= or from a directory that holds one")
        return load_tokenizer(self.sources["tokenizer"])

    def adapter_state_dict(self) -> dict:
        """Weights of the trainable audio side: semantic, acoustic adapters and stage-1 prompts."""
        return {k: v for k, v in self.state_dict().items() if k.startswith(ADAPTER_PREFIXES)}

    def load_adapters(self, state: dict, where: str = "state dict") -> None:
        """Load :meth:`adapter_state_dict` weights; errors name ``where`` and the offending keys."""
        own = self.adapter_state_dict()
        missing, unknown = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unknown:
            raise ValueError(f"{where}: adapter weights do not match the model: missing {missing[:5]}, unknown {unknown[:5]}")
        for key, value in state.items():
            if own[key].shape != value.shape:
                raise ValueError(f"{where}: {key} has shape {tuple(value.shape)}, the model expects {tuple(own[key].shape)}")
        self.load_state_dict(state, strict=False)

    def add_lora(self, lora: LoRAConfig) -> None:
        """Attach the LoRA adapter to the LLM and record it in the config (a second, frozen adapter
        for VRPO's reference: :class:`diffa.train.reference.SharedReference`)."""
        add_lora(self.llm, lora)
        self.config.lora = lora.to_dict()

    # ------------------------------------------------------------------ forward
    def encode_audio(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Log-mel (B, T, n_mels) -> audio embeddings (B, A, D_llm) and their lengths (B,)."""
        enc = self.encoder(feats, feat_lens)
        semantic, sem_lens = self.semantic(enc.last_hidden, enc.lens)
        B = feats.shape[0]
        if self.config.layout == "stage1":
            prefix = self.prompts.weight.unsqueeze(0).expand(B, -1, -1)
        else:
            prefix = self.acoustic(enc.taps, enc.lens if self.config.qformer_padding_mask else None)
        audio = torch.cat([prefix.to(semantic.dtype), semantic], dim=1)
        return audio, sem_lens + prefix.shape[1]

    def text_hidden(
        self,
        audio: torch.Tensor,
        audio_lens: torch.Tensor,
        input_ids: torch.Tensor,
        audio_pos: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Final LLM hidden states at the text positions (B, L_text, D) given encoded audio."""
        text = self.llm.get_input_embeddings()(input_ids)
        spliced = splice_audio(text, audio, audio_lens, audio_pos, attention_mask)
        mask = spliced.mask if self.config.llm_padding_mask and not bool(spliced.mask.all()) else None
        hidden = self.llm.forward_hidden(inputs_embeds=spliced.embeds, attention_mask=mask)
        return hidden.gather(1, spliced.text_index[..., None].expand(-1, -1, hidden.shape[-1]))

    def forward(
        self,
        feats: torch.Tensor,
        feat_lens: torch.Tensor,
        input_ids: torch.Tensor,
        audio_pos: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Logits over the text positions only, (B, L_text, V).

        Arguments
        ---------
        feats : torch.Tensor
            (B, T, n_mels) Whisper log-mel features (padded).
        feat_lens : torch.Tensor
            (B,) valid frames per example.
        input_ids : torch.Tensor
            (B, L_text) token ids (masked positions hold the mask id).
        audio_pos : torch.Tensor
            (B,) text index the audio block is inserted before.
        attention_mask : torch.Tensor, optional
            (B, L_text) False at padding tokens.
        """
        audio, audio_lens = self.encode_audio(feats, feat_lens)
        return self.llm.lm_head(self.text_hidden(audio, audio_lens, input_ids, audio_pos, attention_mask))

    def denoiser(self, feats: torch.Tensor, feat_lens: torch.Tensor, audio_pos: torch.Tensor) -> Callable:
        """A sampler-ready ``denoiser(x, attention_mask=None, rows=None) -> logits``.

        The audio is encoded once here; each call reuses it. ``rows`` selects which examples of
        the batch ``x`` holds (the sampler drops finished rows and doubles rows for CFG).

        Example
        -------
        >>> import torch
        >>> model = DIFFA(tiny_config()).eval()
        >>> den = model.denoiser(torch.randn(2, 40, 16), torch.tensor([40, 30]), torch.tensor([2, 2]))
        >>> den(torch.randint(0, 90, (1, 6)), rows=torch.tensor([1])).shape
        torch.Size([1, 6, 100])
        """
        audio, audio_lens = self.encode_audio(feats, feat_lens)

        def denoise(x: torch.Tensor, attention_mask: Optional[torch.Tensor] = None, rows: Optional[torch.Tensor] = None):
            a, n, p = (audio, audio_lens, audio_pos) if rows is None else (audio[rows], audio_lens[rows], audio_pos[rows])
            return self.llm.lm_head(self.text_hidden(a, n, x, p, attention_mask))

        return denoise
