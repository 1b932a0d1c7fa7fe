"""Multiple-choice benchmark items: the prompts DIFFA was evaluated with and gold resolution.

Two prompt styles, both exactly as in the authors' evaluation scripts:

- MMSU (:func:`mmsu_instruction`), the MMSU/AIR-Bench instruction followed by
  ``Question: ...`` and lettered choices;
- MMAU / MMAR (:func:`choice_list_instruction`), "You are given the audio and
  a multiple-choice question. ..." with ``Choices:`` and a trailing ``Answer:``.

Benchmarks give the gold answer as *text*; :func:`gold_index` finds it among
the choices (an answer that is none of them stays as text, ``gold`` null). MMAU
and MMAR share one index layout (a ``choices`` list and an ``answer`` string),
so :func:`choice_list_entry` turns an item of either into an entry given a
:class:`ChoiceListFormat` naming its audio field and label fields.
"""
import logging
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from diffa.data.corpora.datadir import NOSPEECH, Entry, resolve_audio, sanitize_id
from diffa.data.corpora.records import CorpusError, Record

logger = logging.getLogger(__name__)

MMSU_PROMPT = (
    "Choose the most suitable answer from options A, B, C, and D to respond the question in next line, "
    "**you should only choose A or B or C or D.** Do not provide any additional explanations or content."
)
"""Instruction line of MMSU's reference inference script (used verbatim by DIFFA)."""

CHOICE_LIST_PROMPT = (
    "You are given the audio and a multiple-choice question. "
    "Choose the best answer based only on the speech content and style."
)
"""First line of the DIFFA / DIFFA-2 MMAU (and MMAR) evaluation prompt."""


def lettered(choices: Sequence[str]) -> str:
    """Format choices as ``A. first`` lines.

    Arguments
    ---------
    choices : sequence of str
        At most 26 choices.

    Returns
    -------
    str
        One ``<letter>. <choice>`` line per choice, joined by newlines.

    Example
    -------
    >>> print(lettered(["Man", "Woman"]))
    A. Man
    B. Woman
    """
    if len(choices) > len(string.ascii_uppercase):
        raise ValueError(f"at most 26 choices can be lettered, got {len(choices)}")
    return "\n".join(f"{string.ascii_uppercase[i]}. {c}" for i, c in enumerate(choices))


def mmsu_instruction(question: str, choices: Sequence[str]) -> str:
    """The MMSU prompt: instruction, ``Question:`` and lettered choices.

    Arguments
    ---------
    question : str
        The item's ``question``.
    choices : sequence of str
        ``choice_a`` .. ``choice_d`` that are present.

    Returns
    -------
    str
        The instruction text placed after ``This is the audio: <audio>.``.

    Example
    -------
    >>> print(mmsu_instruction("Which word is stressed?", ["he", "saw", "it"]))  # doctest: +ELLIPSIS
    Choose the most suitable answer ... Do not provide any additional explanations or content.
    <BLANKLINE>
    Question: Which word is stressed?
    <BLANKLINE>
    A. he
    B. saw
    C. it
    """
    return f"{MMSU_PROMPT}\n\nQuestion: {question}\n\n{lettered(choices)}"


def choice_list_instruction(question: str, choices: Sequence[str]) -> str:
    """The MMAU / MMAR prompt used by DIFFA and DIFFA-2.

    Arguments
    ---------
    question : str
        The item's ``question``.
    choices : sequence of str
        The item's ``choices``.

    Returns
    -------
    str
        The instruction text placed after ``This is the audio: <audio>.``.

    Example
    -------
    >>> print(choice_list_instruction("Who speaks?", ["Man", "Woman"]))  # doctest: +ELLIPSIS
    You are given the audio and a multiple-choice question. Choose ... content and style.
    <BLANKLINE>
    Question: Who speaks?
    <BLANKLINE>
    Choices:
    A. Man
    B. Woman
    Answer:
    """
    return f"{CHOICE_LIST_PROMPT}\n\nQuestion: {question}\n\nChoices:\n{lettered(choices)}\nAnswer:"


def gold_index(answer: str, choices: Sequence[str]) -> Optional[int]:
    """Index of the gold answer text among the choices, or None when it is none of them.

    Tries an exact match, then a match ignoring surrounding whitespace, then
    one ignoring case as well; the first matching choice wins.

    Arguments
    ---------
    answer : str
        Gold answer text (MMSU ``answer_gt``, MMAU/MMAR ``answer``).
    choices : sequence of str
        The choices.

    Returns
    -------
    int or None
        Index into ``choices``; None for an answer that matches no choice (the released
        MMAR-meta.json has a few: a two-choice answer, answers paraphrasing their choice).

    Example
    -------
    >>> gold_index(" american ", ["British", "American"]), gold_index("Dog", ["Cat", "Cow"])
    (1, None)
    """
    for norm in (lambda s: s, str.strip, lambda s: s.strip().casefold()):
        keys = [norm(c) for c in choices]
        if norm(answer) in keys:
            return keys.index(norm(answer))
    return None


def scalar_labels(fields: Dict[str, Any], keys: Iterable[str]) -> Dict[str, str]:
    """String labels from the fields that are present and scalar.

    Arguments
    ---------
    fields : dict
        A record's fields.
    keys : iterable of str
        Field names to keep (in this order).

    Returns
    -------
    dict of str to str
        ``{key: str(value)}`` for present, non-null, non-container values.

    Example
    -------
    >>> scalar_labels({"task": "sound", "difficulty": None, "n": 3, "x": [1]}, ["task", "difficulty", "n", "x"])
    {'task': 'sound', 'n': '3'}
    """
    return {
        k: str(fields[k]) for k in keys
        if fields.get(k) is not None and not isinstance(fields[k], (list, dict))
    }


def mcq_entry(record: Record, audio: str, root: Union[str, Path], instruction: str,
              choices: List[str], answer: str, labels: Dict[str, str], source: str) -> Entry:
    """One benchmark item as an :class:`Entry` (task ``mcq``, no transcript).

    Arguments
    ---------
    record : Record
        The item (its ``id`` names the example and the utterance).
    audio : str
        The item's audio path as written in the index.
    root : str or Path
        Benchmark folder that relative audio paths start from.
    instruction : str
        The prompt.
    choices : list of str
        The choices.
    answer : str
        The gold answer text.
    labels : dict of str to str
        Free labels (task, category, ...).
    source : str
        Corpus name.

    Returns
    -------
    Entry
        With ``row["gold"]`` the index of ``answer`` in ``choices`` (its first copy when a
        benchmark repeats a choice, as MMAU test-mini does; the scorers compare option texts,
        so either copy is right; the repeat is logged). An answer that is none of the choices
        (:func:`gold_index`) is kept as the row's ``answer`` with ``gold`` null, and logged: the
        official MMAU/MMAR scorers keep such items and judge them by the answer text, and so does
        :func:`diffa.scoring.mcq.judge`.

    Raises
    ------
    CorpusError
        For a blank answer (MMAU's test split withholds its answers) or a blank choice.

    Example
    -------
    >>> r = Record({"id": "q 1"}, "m.json:2")
    >>> e = mcq_entry(r, "./a/q1.wav", "/B", "Q?", ["x", "y"], "y", {}, "MMAU")
    >>> (e.utt, e.path, e.row["gold"], e.row["answer"])
    ('q_1', '/B/a/q1.wav', 1, 'y')
    >>> e = mcq_entry(r, "./a/q1.wav", "/B", "Q?", ["x", "y"], "x\\ny", {}, "MMAR")
    >>> (e.row["gold"], e.row["answer"])
    (None, 'x\\ny')
    """
    rid = record.get_str("id")
    utt = sanitize_id(rid, record.where)
    repeated = sorted({c for c in choices if choices.count(c) > 1})
    if repeated:
        logger.warning("%s: item %r: repeated choice(s) %s kept as released (scoring compares option texts)",
                       record.where, rid, repeated)
    if not all(c.strip() for c in choices):
        raise CorpusError(f"{record.where}: item {rid!r}: blank choice in {list(choices)!r}; fix the index file")
    if not answer.strip():
        raise CorpusError(f"{record.where}: item {rid!r}: blank answer (this split withholds its answers); "
                          "use a release with answers")
    gold = gold_index(answer, choices)
    if gold is None:
        logger.warning("%s: item %r: answer %r is none of the choices %s; kept, judged by its answer text "
                       "as the official scorers do", record.where, rid, answer, list(choices))
    row = {
        "id": utt, "utt": utt, "task": "mcq", "instruction": instruction,
        "answer": answer if gold is None else choices[gold], "choices": list(choices), "gold": gold,
        "labels": labels, "source": source,
    }
    return Entry(utt=utt, path=resolve_audio(audio, root), text=NOSPEECH, row=row, where=record.where)


@dataclass(frozen=True)
class ChoiceListFormat:
    """Field layout of a benchmark whose items carry a ``choices`` list and an ``answer`` text.

    Arguments
    ---------
    source : str
        Corpus name written to each row's ``source``.
    audio_key : str
        Field holding the audio path relative to the benchmark folder.
    label_keys : tuple of str
        Fields copied into ``labels``.

    Example
    -------
    >>> fmt = ChoiceListFormat(source="MMAR", audio_key="audio_path", label_keys=("modality", "category"))
    >>> fmt.audio_key, scalar_labels({"modality": "speech", "category": None, "id": "m1"}, fmt.label_keys)
    ('audio_path', {'modality': 'speech'})
    """

    source: str
    audio_key: str
    label_keys: Tuple[str, ...]


def choice_list_entry(record: Record, root: Union[str, Path], fmt: ChoiceListFormat) -> Entry:
    """The entry of one MMAU-style item (``id``, audio, ``question``, ``choices``, ``answer``).

    Arguments
    ---------
    record : Record
        The benchmark item.
    root : str or Path
        Benchmark folder (relative audio paths start here).
    fmt : ChoiceListFormat
        Audio field, label fields and source name.

    Returns
    -------
    Entry
        An ``mcq`` entry prompted with :func:`choice_list_instruction`. An item without ``id``
        (early copies of ``mmau-test-mini.json``) is named by its audio file's stem.

    Example
    -------
    >>> fmt = ChoiceListFormat("MMAU", "audio_id", ("task",))
    >>> r = Record({"id": "u1", "audio_id": "./x/u1.wav", "question": "Who?", "choices": ["a", "b"],
    ...             "answer": "a", "task": "speech"}, "m.json:2")
    >>> e = choice_list_entry(r, "/M", fmt)
    >>> e.row["gold"], e.row["labels"]
    (0, {'task': 'speech'})
    >>> choice_list_entry(Record({k: v for k, v in r.fields.items() if k != "id"}, "m.json:2"), "/M", fmt).utt
    'u1'
    """
    choices = record.fields.get("choices")
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
        raise CorpusError(
            f"{record.where}: item {record.fields.get('id')!r}: 'choices' must be a list of at least two "
            f"strings, got {choices!r}; fix the index file"
        )
    audio = record.get_str(fmt.audio_key)
    if record.fields.get("id") is None:
        record = Record({**record.fields, "id": Path(audio).stem}, record.where)
    question = record.get_str("question")
    return mcq_entry(
        record, audio, root, choice_list_instruction(question, choices),
        choices, record.get_str("answer"), scalar_labels(record.fields, fmt.label_keys), fmt.source,
    )
