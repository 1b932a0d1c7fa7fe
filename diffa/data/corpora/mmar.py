"""MMAR (1,000 deep-reasoning items over speech, sound, music and their mix) as ``data/mmar``.

Layout of the official release (github.com/ddlBoJack/MMAR, audio from
huggingface.co/datasets/BoJack/MMAR): ``MMAR-meta.json`` (a JSON list; some
copies ship it as ``MMAR-meta.jsonl``, one object per line) next to ``audio/``.
Each item has

``{"id", "audio_path": "./audio/<id>.wav", "question", "choices": [...], "answer",
"modality", "category", "sub-category", "language", "source", "url", "timestamp"}``

``answer`` is the text of the correct choice. The official scorer is MMAU's,
so rows get the same prompt as MMAU
(:func:`diffa.data.corpora.mcq.choice_list_instruction`).
"""
from pathlib import Path
from typing import Optional, Union

from diffa.data.corpora.datadir import PrepSummary, write_data_dir
from diffa.data.corpora.mcq import ChoiceListFormat, choice_list_entry
from diffa.data.corpora.records import read_records

MMAR_FORMAT = ChoiceListFormat(
    source="MMAR",
    audio_key="audio_path",
    label_keys=("modality", "category", "sub-category", "language"),
)
"""MMAR's audio field and the fields kept as labels."""

MMAR_META = ("MMAR-meta.json", "MMAR-meta.jsonl")
"""Accepted names of the meta file, in order of preference."""


def find_mmar_meta(mmar_dir: Union[str, Path]) -> Optional[Path]:
    """The meta file inside an MMAR folder, or None.

    Arguments
    ---------
    mmar_dir : str or Path
        The MMAR folder.

    Returns
    -------
    Path or None
        ``MMAR-meta.json`` if present, else ``MMAR-meta.jsonl``, else None.

    Example
    -------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> find_mmar_meta(d) is None
    True
    >>> _ = open(os.path.join(d, "MMAR-meta.jsonl"), "w").write("")
    >>> find_mmar_meta(d).name
    'MMAR-meta.jsonl'
    """
    for name in MMAR_META:
        path = Path(mmar_dir) / name
        if path.is_file():
            return path
    return None


def prepare_mmar(mmar_dir: Union[str, Path], out_dir: Union[str, Path]) -> PrepSummary:
    """Write ``data/mmar`` from an MMAR folder.

    Arguments
    ---------
    mmar_dir : str or Path
        The MMAR folder (holds the meta file and ``audio/``).
    out_dir : str or Path
        Output data dir.

    Returns
    -------
    PrepSummary
        What was written, which items were dropped for missing audio, which answers are none of their choices.

    Example
    -------
    >>> import tempfile, os, json, numpy as np, soundfile
    >>> d = tempfile.mkdtemp(); os.makedirs(os.path.join(d, "audio"))
    >>> soundfile.write(os.path.join(d, "audio", "m1.wav"), np.zeros(1600, dtype="float32"), 16000)
    >>> item = {"id": "m1", "audio_path": "./audio/m1.wav", "question": "Why?", "choices": ["a", "b"],
    ...         "answer": "b", "modality": "speech", "category": "Semantic Layer"}
    >>> _ = open(os.path.join(d, "MMAR-meta.json"), "w").write(json.dumps([item]))
    >>> prepare_mmar(d, os.path.join(d, "data", "mmar")).n_rows
    1
    """
    meta = find_mmar_meta(mmar_dir)
    if meta is None:
        raise FileNotFoundError(f"{mmar_dir}: no {' or '.join(MMAR_META)}; point at the MMAR folder")
    records = read_records(meta)
    return write_data_dir(out_dir, [choice_list_entry(r, Path(mmar_dir), MMAR_FORMAT) for r in records])
