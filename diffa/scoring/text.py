"""Text normalisation before scoring, in the conventions the reported numbers use.

Three styles:

``"wenet"``
    WeNet's ``tools/compute-wer.py`` run with ``--char=1``, as DIFFA-2 scores LibriSpeech
    (``DIFFA-2/run_asr_inference.sh``). The line is cut into tokens: spaces (and unassigned code
    points) separate tokens and are dropped; every "other letter" (Unicode category ``Lo``: CJK,
    kana, ...) is a token of its own, so Chinese is scored per character; any other run of ASCII
    characters is one token, ended by a space or by a non-ASCII character (a non-ASCII character
    that is not ``Lo`` starts a new token); a token that starts with ``<`` ends after the next
    ``>`` (``<unk><noise>`` is two tokens). A punctuation mark from WeNet's short list
    (``! , ?`` and the CJK marks ``、。！，；？：「」︰『』《》``) is dropped where a token would start,
    but kept inside a token (``"hello, world"`` keeps ``HELLO,``). Tokens are then upper-cased,
    ``<...>`` tags are deleted from them (``<unk>`` vanishes), and tokens left empty are dropped.
``"whisper_english"``
    Whisper's English normaliser (OpenAI's ``EnglishTextNormalizer``: lower case, spelled-out
    numbers to digits, British to American spelling, contractions expanded, bracketed text and
    fillers removed, punctuation removed). It is ``whisper_normalizer.english.EnglishTextNormalizer``
    brought back to OpenAI's rules: that package adds contractions OpenAI does not expand
    (``kinda``, ``sorta``, ``dunno``, ``cause`` -> ``because``), which are removed. The result
    equals the copy of OpenAI's normaliser in ``transformers`` given the same spelling table
    (tests/scoring/test_text.py checks it).
``"whisper_basic"``
    Whisper's language-independent normaliser (``whisper_normalizer.basic.BasicTextNormalizer``:
    lower case, bracketed text removed, symbols and punctuation replaced by spaces).

The Whisper normalisers come from the ``whisper-normalizer`` package (``pip install
whisper-normalizer``, the ``scoring`` extra of diffa), loaded on first use.

Scoring units: ``"word"`` is the style's tokens (whitespace-separated words of the normalised
text; WeNet's tokens for ``"wenet"``); ``"char"`` is every non-space character of the normalised
text, in order (a character error rate for any script).

Example
-------
>>> normalize("He said, hello <unk> world!", "wenet")
'HE SAID, HELLO WORLD!'
>>> normalize("He said, hello <unk> world!", "whisper_english")
'he said hello world'
>>> tokenize("你好 world", "wenet")
['你', '好', 'WORLD']
"""

import functools
import re
import unicodedata
from typing import Callable, List

STYLES = ("wenet", "whisper_english", "whisper_basic")
"""The normalisation styles :func:`normalize` accepts."""

UNITS = ("word", "char")
"""The scoring units :func:`tokenize` accepts."""

WENET_PUNCTUATION = frozenset("!,?、。！，；？：「」︰『』《》")
"""Marks WeNet's compute-wer drops where a token would start (its ``puncts`` list)."""

WENET_SPACES = frozenset(" \t\r\n")
"""Characters WeNet's compute-wer treats as token separators besides category ``Zs``."""

PACKAGE_ONLY_REPLACERS = (r"\bkinda\b", r"\bsorta\b", r"\bdunno\b", r"\bcause\b")
"""Replacement patterns whisper-normalizer adds to OpenAI's English rules (removed)."""

_ASCII_RUN = re.compile(r"[^\x80-\U0010ffff \t\r\n]*")
_ASCII_RUN_IN_TAG = re.compile(r"[^\x80-\U0010ffff \t\r\n>]*")


def wenet_tokens(text: str) -> List[str]:
    """Cut ``text`` into the tokens WeNet's ``compute-wer.py --char=1`` scores.

    Arguments
    ---------
    text : str
        A transcript or hypothesis (without the utterance id).

    Returns
    -------
    list of str
        Upper-cased tokens with ``<...>`` tags deleted and empty tokens dropped (see the module
        docstring for the cutting rules).

    Example
    -------
    >>> wenet_tokens("<noise><unk>  it's ok, fine!")
    ["IT'S", 'OK,', 'FINE!']
    >>> wenet_tokens("我们 say 你好")
    ['我', '们', 'SAY', '你', '好']
    >>> wenet_tokens("naïve")
    ['NA', 'ÏVE']
    """
    tokens = []
    i, end = 0, len(text)
    while i < end:
        char = text[i]
        category = unicodedata.category(char)
        if char in WENET_PUNCTUATION or char in WENET_SPACES or category in ("Zs", "Cn"):
            i += 1
            continue
        if category == "Lo":
            tokens.append(char)
            i += 1
            continue
        j = (_ASCII_RUN_IN_TAG if char == "<" else _ASCII_RUN).match(text, i + 1).end()
        if j < end and text[j] == ">":
            j += 1
        tokens.append(text[i:j])
        i = j
    cleaned = (_strip_tags(token.upper()) for token in tokens)
    return [token for token in cleaned if token]


def _strip_tags(token: str) -> str:
    """Delete every ``<...>`` span (an unclosed ``<`` deletes the rest), as WeNet does."""
    if "<" not in token:
        return token
    kept = []
    i, end = 0, len(token)
    while i < end:
        if token[i] == "<":
            close = token.find(">", i)
            i = end if close < 0 else close + 1
        else:
            kept.append(token[i])
            i += 1
    return "".join(kept)


@functools.lru_cache(maxsize=None)
def _whisper_normalizer(style: str) -> Callable[[str], str]:
    """The ``whisper_normalizer`` callable of a Whisper style, built once."""
    try:
        if style == "whisper_english":
            from whisper_normalizer.english import EnglishTextNormalizer

            return _openai_english(EnglishTextNormalizer())
        from whisper_normalizer.basic import BasicTextNormalizer

        return BasicTextNormalizer()
    except ImportError as err:
        raise ImportError(
            f"style {style!r} needs the whisper-normalizer package: pip install whisper-normalizer "
            f"(or pip install 'diffa[scoring]')"
        ) from err


def _openai_english(normalizer):
    """Bring whisper-normalizer's English normaliser back to OpenAI's rules (module docstring)."""
    for pattern in PACKAGE_ONLY_REPLACERS:
        normalizer.replacers.pop(pattern, None)
    return normalizer


def _check_args(text: str, style: str) -> None:
    """Raise ValueError for an unknown style or a text that is not a str."""
    if style not in STYLES:
        raise ValueError(f"unknown normalisation style {style!r}; use one of {', '.join(STYLES)}")
    if not isinstance(text, str):
        raise ValueError(f"expected a str to normalise, got {type(text).__name__} {text!r}")


def normalize(text: str, style: str) -> str:
    """Normalise a transcript or hypothesis for scoring.

    Arguments
    ---------
    text : str
        The text.
    style : str
        ``"wenet"``, ``"whisper_english"`` or ``"whisper_basic"`` (see the module docstring).

    Returns
    -------
    str
        The normalised text, tokens separated by single spaces (``""`` when nothing is left).

    Example
    -------
    >>> normalize("Mr. Brown paid twenty-five dollars.", "whisper_english")
    'mister brown paid $25'
    >>> normalize("Café (aside) [noise] OK!", "whisper_basic")
    'café ok'
    >>> normalize("Café (aside) [noise] OK!", "wenet")
    'CAF É (ASIDE) [NOISE] OK!'
    """
    _check_args(text, style)
    if style == "wenet":
        return " ".join(wenet_tokens(text))
    return _whisper_normalized(text, style)


@functools.lru_cache(maxsize=1 << 16)
def _whisper_normalized(text: str, style: str) -> str:
    """Whisper-normalised text, cached: WER and CER of a set normalise the same texts."""
    return " ".join(_whisper_normalizer(style)(text).split())


def tokenize(text: str, style: str, unit: str = "word") -> List[str]:
    """The scoring units of ``text`` after normalisation.

    Arguments
    ---------
    text : str
        The text.
    style : str
        A normalisation style (see :data:`STYLES`).
    unit : str
        ``"word"`` (the style's tokens) or ``"char"`` (every non-space character).

    Returns
    -------
    list of str

    Example
    -------
    >>> tokenize("Hello, world", "whisper_basic")
    ['hello', 'world']
    >>> tokenize("Hello, world", "whisper_basic", unit="char")
    ['h', 'e', 'l', 'l', 'o', 'w', 'o', 'r', 'l', 'd']
    """
    if unit not in UNITS:
        raise ValueError(f"unknown scoring unit {unit!r}; use 'word' or 'char'")
    _check_args(text, style)
    words = wenet_tokens(text) if style == "wenet" else normalize(text, style).split()
    if unit == "word":
        return words
    return [char for word in words for char in word]
