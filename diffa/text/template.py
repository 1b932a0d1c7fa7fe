"""The DIFFA chat template: prompt text, token ids, prompt length and audio position.

The authors build a Llama-3-style prompt by hand, without separators (DIFFA's released code)::

    <|startoftext|><|start_header_id|>system<|end_header_id|>\\n\\n{SYSTEM}<|eot_id|>
    <|start_header_id|>user<|end_header_id|>\\n\\n
    This is the audio: <audio>. {INSTRUCTION}<|eot_id|>
    <|start_header_id|>assistant<|end_header_id|>\\n\\n{ANSWER}<|eot_id|>

(one string; the line breaks above are for reading only). The audio embeddings are spliced in
before token ``audio_pos`` = (token length of the prompt up to and including
``"This is the audio: "``) - 1, i.e. right after ``"This is the audio:"``; the literal text
``" <audio>. "`` stays as ordinary tokens after the audio.

Example
-------
>>> import os, tempfile
>>> from diffa.text.tokenizer import SentencePieceTokenizer, train_sentencepiece
>>> tmp = tempfile.TemporaryDirectory()
>>> tok = SentencePieceTokenizer(train_sentencepiece(
...     ["This is the audio: <audio>. What is said?", "hello"] * 3,
...     os.path.join(tmp.name, "spm.model"), vocab_size=300))
>>> ex = encode_example(tok, "What is said?", answer="hello")
>>> tok.decode(ex.input_ids[ex.prompt_len:], skip_special_tokens=False)
'hello<|eot_id|>'
>>> tok.decode(ex.input_ids[:ex.audio_pos], skip_special_tokens=False)[-18:]
'This is the audio:'
>>> tmp.cleanup()
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional

from diffa.text.tokenizer import SPECIAL_TOKENS

SYSTEM_PROMPT = "You are a helpful voice assistant."
SYSTEM_PROMPT_DIFFA2 = (
    SYSTEM_PROMPT
    + " Imagine you can hear the audio clips."
    + " Focus on the audios and respond directly to the prompts."
)
AUDIO_PREFIX = "This is the audio: "
AUDIO_PLACEHOLDER = "<audio>"

_BOS = SPECIAL_TOKENS["bos"]
_EOT = SPECIAL_TOKENS["eot"]


def _header(role: str) -> str:
    return f"{SPECIAL_TOKENS['start_header']}{role}{SPECIAL_TOKENS['end_header']}\n\n"


def _prompt_parts(instruction: str, system: Optional[str]) -> tuple:
    """(text up to and including AUDIO_PREFIX, rest of the prompt)."""
    system = SYSTEM_PROMPT if system is None else system
    head = f"{_BOS}{_header('system')}{system}{_EOT}{_header('user')}{AUDIO_PREFIX}"
    tail = f"{AUDIO_PLACEHOLDER}. {instruction}{_EOT}{_header('assistant')}"
    return head, tail


def prompt_text(instruction: str, system: Optional[str] = None) -> str:
    """The prompt string (everything before the answer) of the authors' template.

    Arguments
    ---------
    instruction : str
        The user's instruction about the audio.
    system : str, optional
        System prompt (default :data:`SYSTEM_PROMPT`).

    Returns
    -------
    str

    Example
    -------
    >>> for turn in prompt_text("Transcribe.", system="S.").split("<|eot_id|>"):
    ...     print(repr(turn))
    '<|startoftext|><|start_header_id|>system<|end_header_id|>\\n\\nS.'
    '<|start_header_id|>user<|end_header_id|>\\n\\nThis is the audio: <audio>. Transcribe.'
    '<|start_header_id|>assistant<|end_header_id|>\\n\\n'
    """
    head, tail = _prompt_parts(instruction, system)
    return head + tail


class EncodedExample(NamedTuple):
    """One tokenised example.

    input_ids : prompt ids, then (if an answer was given) answer ids and ``<|eot_id|>``.
    prompt_len : number of prompt ids (the answer starts at ``input_ids[prompt_len]``).
    audio_pos : text position before which the audio embeddings are spliced.

    Example
    -------
    >>> ids, prompt_len, audio_pos = EncodedExample([1, 2, 3, 4], prompt_len=3, audio_pos=1)
    >>> ids[prompt_len:]
    [4]
    """

    input_ids: List[int]
    prompt_len: int
    audio_pos: int


def encode_example(
    tok, instruction: str, answer: Optional[str] = None, system: Optional[str] = None
) -> EncodedExample:
    """Tokenise a prompt (and answer) with the DIFFA template.

    The prompt is tokenised in one call (special-token strings become their ids) and the answer
    separately, so ``prompt_len`` is exact; the answer is closed with ``<|eot_id|>``. Padding
    with eos is left to collation.

    Arguments
    ---------
    tok : LLaDATokenizer or SentencePieceTokenizer
        Any tokenizer with ``encode`` and ``eot_id`` (:mod:`diffa.text.tokenizer`).
    instruction : str
        The user's instruction about the audio.
    answer : str, optional
        The assistant's answer (training); None for inference prompts.
    system : str, optional
        System prompt (default :data:`SYSTEM_PROMPT`; DIFFA-2 trained with
        :data:`SYSTEM_PROMPT_DIFFA2`).

    Returns
    -------
    EncodedExample
        ``(input_ids, prompt_len, audio_pos)``.

    Example
    -------
    >>> import os, tempfile
    >>> from diffa.text.tokenizer import SentencePieceTokenizer, train_sentencepiece
    >>> tmp = tempfile.TemporaryDirectory()
    >>> tok = SentencePieceTokenizer(train_sentencepiece(
    ...     ["the audio says yes"] * 3, os.path.join(tmp.name, "spm.model"), vocab_size=280))
    >>> ex = encode_example(tok, "Say it.")
    >>> len(ex.input_ids) == ex.prompt_len, ex.input_ids[0] == tok.bos_id
    (True, True)
    >>> tmp.cleanup()
    """
    if not isinstance(instruction, str):
        raise ValueError(f"instruction must be a str, got {type(instruction).__name__}")
    if answer is not None and not isinstance(answer, str):
        raise ValueError(f"answer must be a str or None, got {type(answer).__name__}")
    head, tail = _prompt_parts(instruction, system)
    input_ids = tok.encode(head + tail)
    prompt_len = len(input_ids)
    audio_pos = len(tok.encode(head)) - 1
    if answer is not None:
        input_ids = input_ids + tok.encode(answer) + [tok.eot_id]
    return EncodedExample(input_ids, prompt_len, audio_pos)
