"""The task manifest ``data/<set>/tasks.jsonl``: one training or evaluation example per line.

This docstring is the one place the format is documented.

Each line is one JSON object (UTF-8), and lines are sorted by ``id`` (code-point order, the same
as ``LC_ALL=C sort`` on UTF-8). Keys:

===============  ==========  ===================================================================
key              type        meaning
===============  ==========  ===================================================================
``id``           str         unique example id, no whitespace
``utt``          str         the audio: an utterance id of ``data/<set>/wav.scp`` (no
                             whitespace); several examples may share one utterance
``task``         str         ``"asr"`` (answer = transcript), ``"mcq"`` (multiple choice) or
                             ``"open_qa"`` (free-form answer)
``instruction``  str         the user's instruction, non-empty, exactly as the model reads it
                             (placed after the audio in the prompt, see ``diffa.text.template``):
                             a multiple-choice instruction lists its options itself, e.g.
                             ``"Who speaks? Choices: (A) a man (B) a woman"``
``answer``       str         the reference answer, non-empty (ASR: the transcript,
                             ``<nospeech>`` for non-speech audio; MCQ: the reference response,
                             usually the gold choice's text)
``choices``      list[str]   ``mcq`` only, required there: at least two non-empty options, at
                             least two of them different, in the order the instruction lists
                             them (for scoring: they are not added to the prompt; a benchmark
                             that repeats an option, as MMAU does, keeps the repeat)
``gold``         int | null  ``mcq`` only, required there: index of the correct choice; null
                             when the benchmark's answer is none of the choices (a few
                             released MMAR items): ``answer`` holds it and scorers judge by it
``labels``       dict        optional: free labels, str -> str (``gender``, ``emotion``,
                             ``sound_event``, ``rate``, ``pitch``, ``noise``, ...)
``source``       str         optional: the corpus the example comes from
===============  ==========  ===================================================================

No other keys are allowed (a misspelt key is an error, not a silently ignored field).
:func:`read_tasks` validates every line on load and names ``file:line`` in each error;
:func:`write_tasks` validates, sorts by id and writes atomically with the keys in the order above.

Example
-------
>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "tasks.jsonl")
>>> write_tasks(path, [
...     {"id": "u1-mcq", "utt": "u1", "task": "mcq", "instruction": "Who speaks? (A) a man (B) a woman",
...      "answer": "a woman", "choices": ["a man", "a woman"], "gold": 1,
...      "labels": {"gender": "female"}},
...     {"id": "u1-asr", "utt": "u1", "task": "asr", "instruction": "Transcribe the audio.",
...      "answer": "HELLO WORLD"}])
>>> print(open(path).read(), end="")
{"id": "u1-asr", "utt": "u1", "task": "asr", "instruction": "Transcribe the audio.",
 "answer": "HELLO WORLD"}
{"id": "u1-mcq", "utt": "u1", "task": "mcq", "instruction": "Who speaks? (A) a man (B) a woman",
 "answer": "a woman", "choices": ["a man", "a woman"], "gold": 1, "labels": {"gender": "female"}}
>>> [row["task"] for row in read_tasks(path)]
['asr', 'mcq']
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Optional

from diffa.data.jsonl import check_keys, check_labels, check_text, read_jsonl, write_jsonl

TASK_TYPES = ("asr", "mcq", "open_qa")
FIELDS = ("id", "utt", "task", "instruction", "answer", "choices", "gold", "labels", "source")
REQUIRED = ("id", "utt", "task", "instruction", "answer")
MCQ_ONLY = ("choices", "gold")


def check_task(task: Any, where: str) -> None:
    """Raise ValueError unless ``task`` is one of :data:`TASK_TYPES` (the message starts with ``where``).

    Example
    -------
    >>> check_task("mcq", "tasks.jsonl:1")
    >>> check_task("caption", "tasks.jsonl:2")
    Traceback (most recent call last):
    ...
    ValueError: tasks.jsonl:2: 'task' must be one of ['asr', 'mcq', 'open_qa'], got 'caption'
    """
    if task not in TASK_TYPES:
        raise ValueError(f"{where}: 'task' must be one of {list(TASK_TYPES)}, got {task!r}")


def validate_task(row: Any, where: str) -> None:
    """Check one manifest row against the schema of this module; raise ValueError if it is off.

    Arguments
    ---------
    row : Any
        The decoded JSON value of one line.
    where : str
        Where the row comes from (``"data/train/tasks.jsonl:12"``); every message starts with it.

    Example
    -------
    >>> validate_task({"id": "a", "utt": "u", "task": "asr", "instruction": "Transcribe.",
    ...                "answer": "HI"}, "tasks.jsonl:1")
    >>> validate_task({"id": "a", "utt": "u", "task": "mcq", "instruction": "Which?",
    ...                "answer": "x", "choices": ["x", "y"], "gold": 2}, "tasks.jsonl:7")
    Traceback (most recent call last):
    ...
    ValueError: tasks.jsonl:7: 'gold' must be an int index into the 2 choices (or null), got 2
    """
    check_keys(row, where, FIELDS, REQUIRED)
    check_text(row, "id", where, token=True)
    check_text(row, "utt", where, token=True)
    check_task(row["task"], where)
    check_text(row, "instruction", where)
    check_text(row, "answer", where)
    if row["task"] == "mcq":
        _validate_choices(row, where)
    else:
        present = [key for key in MCQ_ONLY if key in row]
        if present:
            raise ValueError(f"{where}: {present} only belong to task 'mcq', not {row['task']!r}")
    check_labels(row, where)
    if "source" in row:
        check_text(row, "source", where)


def _validate_choices(row: Mapping, where: str) -> None:
    """Check ``choices`` and ``gold`` of an mcq row."""
    for key in MCQ_ONLY:
        if key not in row:
            raise ValueError(f"{where}: task 'mcq' needs '{key}'")
    choices = row["choices"]
    if (
        not isinstance(choices, list)
        or len(choices) < 2
        or not all(isinstance(c, str) and c.strip() for c in choices)
    ):
        raise ValueError(
            f"{where}: 'choices' must be a list of at least two non-empty strings, got {choices!r}"
        )
    if len(set(choices)) < 2:
        raise ValueError(f"{where}: 'choices' needs at least two different options, got {choices!r}")
    gold = row["gold"]
    if gold is not None and (isinstance(gold, bool) or not isinstance(gold, int) or not 0 <= gold < len(choices)):
        raise ValueError(
            f"{where}: 'gold' must be an int index into the {len(choices)} choices (or null), got {gold!r}"
        )


def read_tasks(path: str, utts: Optional[Iterable[str]] = None) -> List[Dict[str, Any]]:
    """Read and validate ``tasks.jsonl``; errors name ``path:line``.

    Arguments
    ---------
    path : str
        The manifest.
    utts : iterable of str, optional
        The utterance ids of the data directory (e.g. the keys of ``wav.scp``); when given, every
        row's ``utt`` must be one of them.

    Returns
    -------
    list of dict, one per line, in file order (sorted by id).

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "tasks.jsonl")
    >>> _ = open(path, "w").write('{"id": "a", "utt": "u1", "task": "open_qa", '
    ...                           '"instruction": "Describe it.", "answer": "A dog barks."}\\n')
    >>> read_tasks(path)[0]["answer"]
    'A dog barks.'
    >>> read_tasks(path, utts={"u2"})
    Traceback (most recent call last):
    ...
    ValueError: /...tasks.jsonl:1: utt 'u1' is not in the data directory's wav.scp;
    fix the manifest or the data directory
    """
    known = None if utts is None else set(utts)

    def validate(row: Any, where: str) -> None:
        validate_task(row, where)
        if known is not None and row["utt"] not in known:
            raise ValueError(
                f"{where}: utt '{row['utt']}' is not in the data directory's wav.scp; fix the "
                "manifest or the data directory"
            )

    return read_jsonl(path, validate)


def write_tasks(path: str, rows: Iterable[Mapping[str, Any]]) -> None:
    """Validate rows, sort them by id and write ``tasks.jsonl`` atomically.

    Arguments
    ---------
    path : str
        Destination file.
    rows : iterable of Mapping
        The examples; each must pass :func:`validate_task` and ids must be unique.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "tasks.jsonl")
    >>> write_tasks(path, [{"id": "a", "utt": "u", "task": "asr", "instruction": "Transcribe.",
    ...                     "answer": "HI", "choices": ["HI", "HO"]}])
    Traceback (most recent call last):
    ...
    ValueError: row 0 (id 'a'): ['choices'] only belong to task 'mcq', not 'asr'
    """
    write_jsonl(path, rows, validate_task, FIELDS)
