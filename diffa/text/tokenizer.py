"""Tokenizers with LLaDA's special-token interface: the official fast tokenizer and SentencePiece.

Both tokenizers expose the same small interface that the rest of diffa relies on:

* ``encode(text) -> list[int]``: never adds BOS/EOS by itself, and the special-token strings
  written inside ``text`` (``<|startoftext|>``, ``<|eot_id|>``, ...) become their single ids,
  so the chat template (:mod:`diffa.text.template`) is tokenised in one call;
* ``decode(ids, skip_special_tokens=True) -> str``;
* ``vocab_size`` and the ids ``mask_id, bos_id, eos_id, pad_id, start_header_id,
  end_header_id, eot_id`` (``pad_id == eos_id``: answers are right-padded with eos, as in the authors' code).

:class:`LLaDATokenizer` loads an official LLaDA directory (``tokenizer.json``, a plain fast
tokenizer; no remote code). :class:`SentencePieceTokenizer` is the small stand-in used by the
``egs/mini`` recipe, trained by :func:`train_sentencepiece` with the six special strings as
user-defined symbols. :func:`load_tokenizer` picks one from what a directory holds.

Example
-------
>>> import os, tempfile
>>> tmp = tempfile.TemporaryDirectory()
>>> path = train_sentencepiece(["hello world", "the cat sat"] * 4,
...                            os.path.join(tmp.name, SPM_MODEL_NAME), vocab_size=300)
>>> tok = load_tokenizer(tmp.name)
>>> ids = tok.encode("<|startoftext|>hello world<|eot_id|>")
>>> ids[0] == tok.bos_id, ids[-1] == tok.eot_id
(True, True)
>>> tok.decode(ids)
'hello world'
>>> tmp.cleanup()
"""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Sequence, Union

import sentencepiece as spm

from diffa.files import atomic_save, read_json_object

logger = logging.getLogger(__name__)

# attribute prefix -> special-token string (LLaDA-8B-Instruct's released tokenizer)
SPECIAL_TOKENS = {
    "bos": "<|startoftext|>",
    "eos": "<|endoftext|>",
    "mask": "<|mdm_mask|>",
    "start_header": "<|start_header_id|>",
    "end_header": "<|end_header_id|>",
    "eot": "<|eot_id|>",
}
HF_TOKENIZER_NAME = "tokenizer.json"
# the JSON files PreTrainedTokenizerFast reads from a tokenizer directory
HF_JSON_NAMES = (HF_TOKENIZER_NAME, "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")
SPM_MODEL_NAME = "spm.model"
# what to do about a tokenizer file that cannot be parsed
UNREADABLE_REMEDY = "copy the tokenizer again from where the model was saved (or the official LLaDA directory)"

PathLike = Union[str, os.PathLike]


def _as_list(ids) -> List[int]:
    """Token ids from a list, tuple, numpy array or 1-D tensor."""
    return [int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]


class _SpecialTokenizer:
    """The interface both tokenizers share, around a backend's ``_encode`` and ``_decode``.

    Subclasses call :meth:`_set_special_ids` once loaded and define ``_encode(text)`` and
    ``_decode(ids, skip_special_tokens)`` (``ids`` already a list without the six special
    ids when ``skip_special_tokens``).
    """

    def _set_special_ids(self, lookup: Callable[[str], Optional[int]], source: str) -> None:
        """Look the special-token ids up by their strings and store them as attributes."""
        for name, token in SPECIAL_TOKENS.items():
            token_id = lookup(token)
            if token_id is None:
                raise ValueError(
                    f"{source}: the special token {token!r} is missing from the vocabulary; "
                    f"diffa needs all of {list(SPECIAL_TOKENS.values())}"
                )
            setattr(self, f"{name}_id", token_id)
        self.pad_id = self.eos_id
        self.special_ids = frozenset(getattr(self, f"{name}_id") for name in SPECIAL_TOKENS)

    def encode(self, text: str) -> List[int]:
        """Token ids of ``text``; no BOS/EOS added, special-token strings recognised.

        Arguments
        ---------
        text : str
            Text to tokenise.

        Returns
        -------
        list of int
        """
        return self._encode(text)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Text of ``ids``; with ``skip_special_tokens`` the special tokens are dropped.

        Arguments
        ---------
        ids : sequence of int or 1-D tensor
            Token ids.
        skip_special_tokens : bool
            Drop the six special tokens (and any other the backend marks special) before
            decoding.

        Returns
        -------
        str
        """
        ids = _as_list(ids)
        if skip_special_tokens:
            ids = [i for i in ids if i not in self.special_ids]
        return self._decode(ids, skip_special_tokens)


class LLaDATokenizer(_SpecialTokenizer):
    """The official LLaDA tokenizer (``tokenizer.json``), loaded without remote code.

    The directory is read with ``transformers.PreTrainedTokenizerFast`` directly (rather than
    ``AutoTokenizer``) so that the model's ``config.json`` (``model_type: llada``, which
    transformers does not know) is never consulted.

    Arguments
    ---------
    path : str or os.PathLike
        Directory holding ``tokenizer.json`` (and usually ``tokenizer_config.json``).

    Example
    -------
    >>> import os, tempfile
    >>> from tokenizers import Tokenizer, models, pre_tokenizers
    >>> vocab = {"[UNK]": 0, "hello": 1, "world": 2}
    >>> tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    >>> tk.pre_tokenizer = pre_tokenizers.Whitespace()
    >>> tk.add_special_tokens(list(SPECIAL_TOKENS.values()))
    6
    >>> tmp = tempfile.TemporaryDirectory()
    >>> tk.save(os.path.join(tmp.name, "tokenizer.json"))
    >>> tok = LLaDATokenizer(tmp.name)
    >>> tok.encode("<|startoftext|>hello world")
    [3, 1, 2]
    >>> tok.mask_id, tok.eot_id, tok.pad_id == tok.eos_id, tok.vocab_size
    (5, 8, True, 9)
    >>> tmp.cleanup()
    """

    def __init__(self, path: PathLike):
        from transformers import PreTrainedTokenizerFast

        self.path = Path(path)
        if not (self.path / HF_TOKENIZER_NAME).is_file():
            raise FileNotFoundError(
                f"{self.path}: no {HF_TOKENIZER_NAME}; pass an official LLaDA directory "
                "(tokenizer.json + tokenizer_config.json)"
            )
        try:
            self.hf = PreTrainedTokenizerFast.from_pretrained(str(self.path))
        except json.JSONDecodeError as err:
            for name in HF_JSON_NAMES:  # raises naming the malformed file
                if (self.path / name).is_file():
                    read_json_object(self.path / name, UNREADABLE_REMEDY)
            raise ValueError(f"{self.path / HF_TOKENIZER_NAME}: not a readable tokenizer ({err}); "
                             f"{UNREADABLE_REMEDY}") from None
        self._set_special_ids(self.hf.get_vocab().get, str(self.path / HF_TOKENIZER_NAME))

    @property
    def vocab_size(self) -> int:
        """Number of ids the tokenizer can produce (base vocabulary + added tokens)."""
        return len(self.hf)

    def _encode(self, text: str) -> List[int]:
        return self.hf.encode(text, add_special_tokens=False)

    def _decode(self, ids: List[int], skip_special_tokens: bool) -> str:
        return self.hf.decode(ids, skip_special_tokens=skip_special_tokens)


class SentencePieceTokenizer(_SpecialTokenizer):
    """A SentencePiece model whose user-defined symbols are the six special strings.

    Models made by :func:`train_sentencepiece` encode any text (byte fallback) and decode it
    back exactly (identity normalisation, no dummy prefix, whitespace kept).

    Arguments
    ---------
    model_path : str or os.PathLike
        The ``.model`` file.

    Example
    -------
    >>> import os, tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = train_sentencepiece(["a tiny corpus"] * 3, os.path.join(tmp.name, "spm.model"),
    ...                            vocab_size=280)
    >>> tok = SentencePieceTokenizer(path)
    >>> tok.bos_id, tok.eos_id, tok.mask_id, tok.eot_id
    (1, 2, 3, 6)
    >>> text = "<|startoftext|>a tiny ünicode\\n\\ncorpus<|eot_id|>"
    >>> tok.decode(tok.encode(text), skip_special_tokens=False) == text
    True
    >>> tmp.cleanup()
    """

    def __init__(self, model_path: PathLike):
        self.path = Path(model_path)
        if not self.path.is_file():
            raise FileNotFoundError(
                f"{self.path}: no such SentencePiece model; train one with "
                "diffa.text.tokenizer.train_sentencepiece"
            )
        try:
            self.sp = spm.SentencePieceProcessor(model_file=str(self.path))
        except RuntimeError as err:  # sentencepiece's parse error
            raise ValueError(f"{self.path}: not a readable tokenizer ({err}); {UNREADABLE_REMEDY}") from None
        self._set_special_ids(self._piece_id, str(self.path))

    def _piece_id(self, piece: str) -> Optional[int]:
        token_id = self.sp.piece_to_id(piece)
        return token_id if self.sp.id_to_piece(token_id) == piece else None

    @property
    def vocab_size(self) -> int:
        """Number of pieces."""
        return self.sp.get_piece_size()

    def _encode(self, text: str) -> List[int]:
        return self.sp.encode(text)

    def _decode(self, ids: List[int], skip_special_tokens: bool) -> str:
        return self.sp.decode(ids)


def train_sentencepiece(
    texts: Union[PathLike, Iterable[str]],
    model_path: PathLike,
    vocab_size: int,
    model_type: str = "unigram",
    byte_fallback: bool = True,
    character_coverage: float = 1.0,
) -> Path:
    """Train a SentencePiece model with the special tokens and write it atomically.

    Ids 0..6 are ``<unk>`` and the six special strings (in :data:`SPECIAL_TOKENS` order); with
    ``byte_fallback`` the 256 byte pieces follow, so any text encodes. Normalisation is the
    identity, whitespace (newlines included) is kept and no dummy prefix is added, so
    ``decode(encode(x)) == x``. Training runs on one thread and is deterministic.

    Arguments
    ---------
    texts : path or iterable of str
        A text file (one sentence per line) or an iterable of sentences.
    model_path : str or os.PathLike
        Output ``.model`` file (``spm.model`` for :func:`load_tokenizer`).
    vocab_size : int
        Upper bound on the number of pieces (a small corpus may give fewer). With byte
        fallback it must exceed 263 plus the number of distinct characters.
    model_type : str
        ``"unigram"`` or ``"bpe"``.
    byte_fallback : bool
        Encode unknown characters as UTF-8 bytes instead of ``<unk>``.
    character_coverage : float
        Fraction of characters covered by character pieces.

    Returns
    -------
    Path
        ``model_path``.

    Example
    -------
    >>> import os, tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = train_sentencepiece(["one two three"] * 5, os.path.join(tmp.name, "spm.model"),
    ...                            vocab_size=280, model_type="bpe")
    >>> path.name, path.is_file()
    ('spm.model', True)
    >>> tmp.cleanup()
    """
    if model_type not in ("unigram", "bpe"):
        raise ValueError(f"model_type must be 'unigram' or 'bpe', got {model_type!r}")
    model_path = Path(model_path)
    options = dict(
        vocab_size=vocab_size,
        model_type=model_type,
        byte_fallback=byte_fallback,
        character_coverage=character_coverage,
        user_defined_symbols=list(SPECIAL_TOKENS.values()),
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=False,
        unk_id=0,
        bos_id=-1,
        eos_id=-1,
        pad_id=-1,
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
    )
    if isinstance(texts, (str, os.PathLike)):
        if not Path(texts).is_file():
            raise FileNotFoundError(f"{texts}: no such text file to train SentencePiece on")
        options["input"] = str(texts)
    else:
        options["sentence_iterator"] = iter(texts)
    writer = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(model_writer=writer, **options)
    except RuntimeError as err:
        raise ValueError(f"training SentencePiece model {model_path} failed: {err}") from err
    atomic_save(model_path, lambda tmp: Path(tmp).write_bytes(writer.getvalue()))
    logger.info("wrote SentencePiece model %s (%s, vocab_size <= %d)", model_path, model_type,
                vocab_size)
    return model_path


def load_tokenizer(path: PathLike) -> Union[LLaDATokenizer, SentencePieceTokenizer]:
    """Load the tokenizer a directory holds.

    ``tokenizer.json`` -> :class:`LLaDATokenizer`; else ``spm.model`` ->
    :class:`SentencePieceTokenizer`.

    Arguments
    ---------
    path : str or os.PathLike
        Tokenizer (or model) directory.

    Returns
    -------
    LLaDATokenizer or SentencePieceTokenizer

    Example
    -------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as empty:
    ...     load_tokenizer(empty)  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    FileNotFoundError: ...: no tokenizer.json (LLaDA) or spm.model (SentencePiece)
    """
    path = Path(path)
    if (path / HF_TOKENIZER_NAME).is_file():
        return LLaDATokenizer(path)
    if (path / SPM_MODEL_NAME).is_file():
        return SentencePieceTokenizer(path / SPM_MODEL_NAME)
    raise FileNotFoundError(
        f"{path}: no {HF_TOKENIZER_NAME} (LLaDA) or {SPM_MODEL_NAME} (SentencePiece); point to "
        "an official LLaDA directory or run the recipe stage that trains the tokenizer"
    )
