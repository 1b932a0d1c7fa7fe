"""Answer a question about an audio clip (a file or a waveform) with a DIFFA model.

:func:`answer` answers one; :func:`read_questions` reads a file of them (``diffa.bin.infer
--questions``), so that a loaded model answers many.

The audio may have any sample rate and channel count: a file is read with
:func:`diffa.data.audio.load_audio`; a waveform array is averaged over its channels and
resampled to 16 kHz here. Audio longer than 30 s is cut to its first 30 s (what the Whisper
encoder sees). The log-mel features are Whisper's (:class:`diffa.data.features.WhisperLogMel`)
with the encoder's number of mel bins, the prompt is the training template's, and decoding uses
:func:`diffa.decode.decoder.decode_batch` with the settings of a :class:`DecodeConfig` (its
``task_overrides`` entry for ``task`` when there is one).

Example
-------
>>> import numpy as np
>>> from diffa.model.diffa import DIFFA, tiny_config
>>> class Tok:  # a stand-in tokenizer: one id per character
...     mask_id, eos_id, eot_id, pad_id, vocab_size = 99, 98, 97, 98, 100
...     special_ids = {97, 98, 99}
...     def encode(self, text):
...         return [ord(c) % 90 for c in text]
...     def decode(self, ids, skip_special_tokens=True):
...         return "".join(chr(65 + i % 26) for i in ids)
>>> stereo_8k = np.random.default_rng(0).standard_normal((8000, 2)).astype(np.float32) * 0.1
>>> out = answer(DIFFA(tiny_config()).eval(), Tok(), stereo_8k, "What do you hear?",
...              sample_rate=8000, config=DecodeConfig(gen_length=8, block_length=8, steps=8))
>>> isinstance(out.text, str), 0 < out.nfe <= 8
(True, True)
"""

from __future__ import annotations

import logging
import time
from typing import List, NamedTuple, Optional, Union

import numpy as np
import torch
import torchaudio.functional

from diffa.data.audio import load_audio
from diffa.data.collate import collate_prompts
from diffa.data.dataset import Example
from diffa.data.features import SAMPLE_RATE, WhisperLogMel
from diffa.data.jsonl import check_keys, check_text, iter_json_lines
from diffa.data.tasks import check_task
from diffa.decode.config import DecodeConfig
from diffa.decode.decoder import decode_batch
from diffa.text.template import encode_example

logger = logging.getLogger(__name__)

MAX_SECONDS = 30.0


QUESTION_FIELDS = ("id", "audio", "question", "task")


class Question(NamedTuple):
    """One line of a questions file (:func:`read_questions`).

    Example
    -------
    >>> q = Question(id="q1", audio="clip.wav", question="Who speaks?", task=None)
    >>> q._asdict()
    {'id': 'q1', 'audio': 'clip.wav', 'question': 'Who speaks?', 'task': None}
    """

    id: str
    audio: str
    question: str
    task: Optional[str]


def read_questions(path: str) -> List[Question]:
    """The questions of a JSON-lines file, one object per line, in file order.

    Each object has ``audio`` (an audio file; a relative path is taken from the current
    directory, as in a ``wav.scp``) and ``question``, and may have ``task`` (asr, mcq or open_qa:
    whose ``task_overrides`` apply, as ``--task``; default: ``None``) and ``id`` (no whitespace,
    unique; default: the line number). Errors name ``path:line``.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "questions.jsonl")
    >>> _ = open(path, "w").write('{"audio": "a.wav", "question": "Transcribe the audio.", "task": "asr"}\\n'
    ...                           '{"id": "q2", "audio": "b.flac", "question": "Who speaks?"}\\n')
    >>> [tuple(q) for q in read_questions(path)]
    [('1', 'a.wav', 'Transcribe the audio.', 'asr'), ('q2', 'b.flac', 'Who speaks?', None)]
    >>> _ = open(path, "w").write('{"audio": "a.wav", "question": "Who?", "task": "caption"}\\n')
    >>> read_questions(path)
    Traceback (most recent call last):
    ...
    ValueError: /...questions.jsonl:1: 'task' must be one of ['asr', 'mcq', 'open_qa'], got 'caption'
    """
    questions, lines = [], {}
    for number, row in iter_json_lines(path):
        where = f"{path}:{number}"
        check_keys(row, where, fields=QUESTION_FIELDS, required=("audio", "question"))
        for key in ("audio", "question"):
            check_text(row, key, where)
        row.setdefault("id", str(number))
        check_text(row, "id", where, token=True)
        if row["id"] in lines:
            raise ValueError(f"{where}: id {row['id']!r} is on line {lines[row['id']]} too; ids must be unique")
        lines[row["id"]] = number
        task = row.get("task")
        if task is not None:
            check_task(task, where)
        questions.append(Question(row["id"], row["audio"], row["question"], task))
    if not questions:
        raise ValueError(f"{path}: no questions in it (one JSON object per line: audio, question, task, id)")
    return questions


class Answer(NamedTuple):
    """What :func:`answer` returns: the answer text, forward passes spent, seconds taken.

    Example
    -------
    >>> text, nfe, seconds = Answer("a woman", nfe=6, seconds=0.25)
    >>> text, nfe
    ('a woman', 6)
    """

    text: str
    nfe: int
    seconds: float


def waveform_16k(audio: Union[str, np.ndarray, torch.Tensor], sample_rate: Optional[int] = None) -> np.ndarray:
    """A mono float32 16 kHz waveform (at most 30 s) from a file or an array.

    Arguments
    ---------
    audio : str, numpy array or tensor
        A file path (any format libsndfile reads), or samples shaped (samples,) or
        (samples, channels) as soundfile returns them.
    sample_rate : int, optional
        The array's rate (required for arrays; ignored for files).

    Returns
    -------
    np.ndarray
        (samples,) float32 at 16 kHz.

    Example
    -------
    >>> waveform_16k(np.zeros((44100, 2), np.float32), sample_rate=44100).shape
    (16000,)
    """
    if isinstance(audio, str):
        wav, info = load_audio(audio, target_sr=SAMPLE_RATE, max_seconds=MAX_SECONDS, long_audio="truncate")
        if info.truncated:
            logger.warning("%s: longer than %.0f s; only the first %.0f s are used", audio, MAX_SECONDS, MAX_SECONDS)
        return wav
    if sample_rate is None or sample_rate <= 0:
        raise ValueError(f"a waveform needs its sample_rate (a positive int), got {sample_rate!r}")
    wav = torch.as_tensor(np.asarray(audio, dtype=np.float32))
    if wav.dim() == 2:
        wav = wav.mean(dim=1)
    if wav.dim() != 1 or wav.numel() == 0:
        raise ValueError(f"a waveform must be (samples,) or (samples, channels) and non-empty, got shape {tuple(wav.shape)}")
    if sample_rate != SAMPLE_RATE:
        wav = torchaudio.functional.resample(wav, sample_rate, SAMPLE_RATE)
    limit = int(MAX_SECONDS * SAMPLE_RATE)
    if wav.numel() > limit:
        logger.warning("waveform longer than %.0f s; only the first %.0f s are used", MAX_SECONDS, MAX_SECONDS)
    return wav[:limit].numpy()


@torch.no_grad()
def answer(
    model,
    tokenizer,
    audio: Union[str, np.ndarray, torch.Tensor],
    question: str,
    config: Optional[DecodeConfig] = None,
    sample_rate: Optional[int] = None,
    task: Optional[str] = None,
) -> Answer:
    """Answer ``question`` about ``audio``.

    Arguments
    ---------
    model : DIFFA
        The model, in eval mode.
    tokenizer : object
        Its tokenizer.
    audio : str, numpy array or tensor
        A file, or a waveform with ``sample_rate`` (see :func:`waveform_16k`).
    question : str
        The instruction (e.g. "Transcribe the audio." or a multiple-choice question).
    config : DecodeConfig, optional
        Decoding settings (default: ``DecodeConfig()``: 128/128/128, low-confidence remasking).
    sample_rate : int, optional
        The waveform's rate.
    task : str, optional
        Task type whose ``task_overrides`` apply (asr, mcq, open_qa).

    Returns
    -------
    Answer

    Example
    -------
    A config whose ``task_overrides`` give ASR a longer answer, with a stand-in tokenizer:

    >>> from diffa.model.diffa import DIFFA, tiny_config
    >>> class Tok:  # one id per character
    ...     mask_id, eos_id, eot_id, pad_id, vocab_size, special_ids = 99, 98, 97, 98, 100, {97, 98, 99}
    ...     def encode(self, text): return [ord(c) % 90 for c in text]
    ...     def decode(self, ids, skip_special_tokens=True): return "".join(chr(65 + i % 26) for i in ids)
    >>> config = DecodeConfig(gen_length=4, block_length=4, steps=4, stop_at_eos=False,
    ...                       task_overrides={"asr": {"gen_length": 8, "block_length": 8, "steps": 8}})
    >>> model, silence = DIFFA(tiny_config()).eval(), np.zeros(16000, np.float32)
    >>> [answer(model, Tok(), silence, "What is said?", config, 16000, task).nfe for task in (None, "asr")]
    [4, 8]
    >>> answer(model, Tok(), np.zeros(100, np.float32), "What is said?", config, sample_rate=16000)
    Traceback (most recent call last):
     ...
    ValueError: waveform: shorter than one 10 ms frame
    """
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"question must be a non-empty string, got {question!r}")
    config = config or DecodeConfig()
    wav = torch.from_numpy(waveform_16k(audio, sample_rate))
    if wav.numel() < 160:
        raise ValueError(f"{audio if isinstance(audio, str) else 'waveform'}: shorter than one 10 ms frame")
    feats, _ = WhisperLogMel(n_mels=model.encoder.n_mels)(wav[None])
    ids, prompt_len, audio_pos = encode_example(tokenizer, question, system=config.system_prompt)
    example = Example("input", feats[0], torch.tensor(ids), prompt_len, audio_pos, {"task": task})
    start = time.perf_counter()
    generator = torch.Generator(model.llm.device).manual_seed(config.seed)
    texts, nfe = decode_batch(model, tokenizer, collate_prompts([example], tokenizer.pad_id),
                              config.sampling(task), config.stop_at_eos, generator)
    return Answer(texts[0], nfe[0], time.perf_counter() - start)
