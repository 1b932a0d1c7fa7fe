"""The authors' released training indices (DIFFA / DIFFA-2) as data dirs.

The authors' training code reads one JSON list per stage; every item has

``audio_id, audio_filepath, transcription, input, target, dataset, duration,
seed_transcript`` and, in the preference (VRPO) index, ``rejected``

where ``input`` is the instruction, ``target`` the reference answer (the
*chosen* answer in preference data) and, in stage 1, the transcription is the
target. The preference example of DIFFA-2's README also repeats ``target`` as
``chosen``, which the authors' VRPO loader never reads (it trains on
``target``); it is ignored here too. This module maps an index onto the tasks
contract:

============  ==========================================================
kind          row
============  ==========================================================
``"asr"``     task ``asr``, answer = ``transcription`` (the authors' stage 1)
``"qa"``      task ``open_qa``, answer = ``target``
``"pref"``    task ``open_qa``, answer = ``target``, ``rejected`` required
============  ==========================================================

``rejected`` (the dispreferred answer of a preference pair) goes into the
row's ``labels["rejected"]`` whenever an item has one, so preference rows need
no schema change. ``dataset`` becomes the row's ``source``; other scalar
fields become ``labels`` too. The utterance id is
``audio_id`` (items sharing it must share the file) and the example id is
``<audio_id>-<k>``, k counting that utterance's items in file order. The
``text`` file gets ``transcription``, else ``seed_transcript``, else
``<nospeech>``. Relative ``audio_filepath`` values start at ``audio_root``.
An empty ``input``, answer or (preference) ``rejected`` stops preparation with
the item's ``file:line`` (the tasks contract has no empty instruction or answer,
a preference pair no empty ``rejected``).
"""
from pathlib import Path
from typing import Dict, List, Optional, Union

from diffa.data.corpora.datadir import NOSPEECH, Entry, PrepSummary, resolve_audio, sanitize_id, write_data_dir
from diffa.data.corpora.mcq import scalar_labels
from diffa.data.corpora.records import CorpusError, Record, read_records


KINDS = ("asr", "qa", "pref")
"""What an index is used for: stage-1 ASR, instruction QA, or preference pairs."""

INDEX_FIELDS = (
    "audio_id", "audio_filepath", "transcription", "input", "target",
    "dataset", "duration", "seed_transcript", "rejected", "chosen",
)
"""Fields of the authors' indices that have a fixed meaning; any other scalar field becomes a label."""


def authors_row(record: Record, example_id: str, utt: str, kind: str) -> Dict:
    """The tasks.jsonl row of one item.

    Arguments
    ---------
    record : Record
        The item.
    example_id : str
        Its example id.
    utt : str
        Its utterance id.
    kind : str
        ``"asr"``, ``"qa"`` or ``"pref"``.

    Returns
    -------
    dict
        A row following the tasks contract (``labels["rejected"]`` when the item has one).

    Example
    -------
    >>> r = Record({"audio_id": "a", "input": "Describe the voice.", "target": "A calm male voice.",
    ...             "rejected": "A calm female voice.", "dataset": "vctk", "gender": "male"}, "i.json:2")
    >>> authors_row(r, "a-0", "a", "pref")  # doctest: +NORMALIZE_WHITESPACE
    {'id': 'a-0', 'utt': 'a', 'task': 'open_qa', 'instruction': 'Describe the voice.',
     'answer': 'A calm male voice.', 'labels': {'gender': 'male', 'rejected': 'A calm female voice.'},
     'source': 'vctk'}
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; use one of {KINDS}")
    extra = [k for k in record.fields if k not in INDEX_FIELDS]
    row = {
        "id": example_id, "utt": utt, "task": "asr" if kind == "asr" else "open_qa",
        "instruction": _text(record, "input"), "answer": _text(record, "transcription" if kind == "asr" else "target"),
        "labels": scalar_labels(record.fields, extra),
        "source": record.get_str("dataset", required=False) or "authors_json",
    }
    rejected = _text(record, "rejected") if kind == "pref" else record.get_str("rejected", required=False)
    if rejected and kind != "asr":
        row["labels"]["rejected"] = rejected
    return row


def _text(record: Record, field: str) -> str:
    """A field that must hold text (the tasks contract has no empty instruction or answer)."""
    value = record.get_str(field)
    if not value.strip():
        raise CorpusError(f"{record.where}: item {record.fields.get('audio_id')!r} has an empty {field!r}")
    return value


def authors_entries(index: Union[str, Path], kind: str, audio_root: Optional[Union[str, Path]] = None) -> List[Entry]:
    """Entries of one authors' index.

    Arguments
    ---------
    index : str or Path
        The JSON list (or JSON lines) file.
    kind : str
        ``"asr"``, ``"qa"`` or ``"pref"`` (see the module docstring).
    audio_root : str or Path, optional
        Where relative ``audio_filepath`` values start; default the index's folder.

    Returns
    -------
    list of Entry
        One entry per item.

    Example
    -------
    >>> import tempfile, os, json
    >>> d = tempfile.mkdtemp(); p = os.path.join(d, "qa.json")
    >>> items = [{"audio_id": "s1", "audio_filepath": "wav/s1.wav", "transcription": "", "input": "Q1?",
    ...           "target": "A1.", "dataset": "vctk", "duration": 1.2, "seed_transcript": "hello"},
    ...          {"audio_id": "s1", "audio_filepath": "wav/s1.wav", "transcription": "", "input": "Q2?",
    ...           "target": "A2.", "dataset": "vctk", "duration": 1.2, "seed_transcript": "hello"}]
    >>> _ = open(p, "w").write(json.dumps(items))
    >>> [(e.row["id"], e.text, e.path == os.path.join(d, "wav", "s1.wav")) for e in authors_entries(p, "qa")]
    [('s1-0', 'hello', True), ('s1-1', 'hello', True)]
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; use one of {KINDS}")
    index = Path(index)
    root = Path(audio_root) if audio_root is not None else index.parent
    counts: Dict[str, int] = {}
    entries = []
    for record in read_records(index):
        utt = sanitize_id(record.get_str("audio_id"), record.where)
        k = counts.get(utt, 0)
        counts[utt] = k + 1
        text = record.get_str("transcription", required=False) or record.get_str("seed_transcript", required=False)
        entries.append(Entry(
            utt=utt, path=resolve_audio(record.get_str("audio_filepath"), root), text=text or NOSPEECH,
            row=authors_row(record, f"{utt}-{k}", utt, kind), where=record.where,
        ))
    return entries


def prepare_authors_json(index: Union[str, Path], out_dir: Union[str, Path], kind: str,
                         audio_root: Optional[Union[str, Path]] = None) -> PrepSummary:
    """Write a data dir from one authors' index.

    Arguments
    ---------
    index : str or Path
        The JSON index.
    out_dir : str or Path
        Output data dir.
    kind : str
        ``"asr"``, ``"qa"`` or ``"pref"``.
    audio_root : str or Path, optional
        Where relative ``audio_filepath`` values start; default the index's folder.

    Returns
    -------
    PrepSummary
        What was written and which items were dropped for missing audio.

    Example
    -------
    >>> import tempfile, os, json, numpy as np, soundfile
    >>> d = tempfile.mkdtemp()
    >>> soundfile.write(os.path.join(d, "s1.wav"), np.zeros(1600, dtype="float32"), 16000)
    >>> item = {"audio_id": "s1", "audio_filepath": "s1.wav", "transcription": "HELLO", "input": "Transcribe.",
    ...         "target": "HELLO", "dataset": "librispeech", "duration": 0.1, "seed_transcript": ""}
    >>> _ = open(os.path.join(d, "asr.json"), "w").write(json.dumps([item]))
    >>> prepare_authors_json(os.path.join(d, "asr.json"), os.path.join(d, "data", "asr"), "asr").n_rows
    1
    """
    return write_data_dir(out_dir, authors_entries(index, kind, audio_root))
