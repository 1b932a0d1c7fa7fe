"""MMAU test-mini (1,000 items) and test (9,000) as ``data/mmau_test_mini`` / ``data/mmau_test``.

Layout of the official release (github.com/Sakshi113/MMAU): the folder holds
``mmau-test-mini.json`` (and ``mmau-test.json``), each one JSON list of items

``{"id", "audio_id": "./test-mini-audios/<id>.wav", "question", "choices": [...],
"answer", "dataset", "task", "split", "category", "sub-category", "difficulty"}``

with the audio unpacked next to it (``test-mini-audios/``, ``test-audios/``). Early copies
lack ``id``; the audio file's stem (the same UUID) stands in.
``answer`` is the text of the correct choice. Rows are prompted with
:func:`diffa.data.corpora.mcq.choice_list_instruction`, as DIFFA was scored.
"""
from pathlib import Path
from typing import Union

from diffa.data.corpora.datadir import PrepSummary, write_data_dir
from diffa.data.corpora.mcq import ChoiceListFormat, choice_list_entry
from diffa.data.corpora.records import read_records

MMAU_FORMAT = ChoiceListFormat(
    source="MMAU",
    audio_key="audio_id",
    label_keys=("task", "difficulty", "category", "sub-category", "dataset", "split"),
)
"""MMAU's audio field and the fields kept as labels."""

MMAU_SPLITS = {"test_mini": "mmau-test-mini.json", "test": "mmau-test.json"}
"""Index file of each split inside the MMAU folder."""


def prepare_mmau(mmau_dir: Union[str, Path], out_dir: Union[str, Path], split: str = "test_mini") -> PrepSummary:
    """Write one MMAU split as a data dir.

    Arguments
    ---------
    mmau_dir : str or Path
        The MMAU folder (holds the index JSON and the audio folders).
    out_dir : str or Path
        Output data dir.
    split : str
        ``"test_mini"`` or ``"test"`` (the test split needs a release with answers).

    Returns
    -------
    PrepSummary
        What was written, which items were dropped for missing audio, which answers are none of their choices.

    Example
    -------
    >>> import tempfile, os, json, numpy as np, soundfile
    >>> d = tempfile.mkdtemp(); os.makedirs(os.path.join(d, "test-mini-audios"))
    >>> soundfile.write(os.path.join(d, "test-mini-audios", "u1.wav"), np.zeros(1600, dtype="float32"), 16000)
    >>> item = {"id": "u1", "audio_id": "./test-mini-audios/u1.wav", "question": "Who?",
    ...         "choices": ["Man", "Woman"], "answer": "Woman", "task": "speech", "difficulty": "easy"}
    >>> _ = open(os.path.join(d, "mmau-test-mini.json"), "w").write(json.dumps([item]))
    >>> prepare_mmau(d, os.path.join(d, "data", "mmau_test_mini")).n_rows
    1
    """
    if split not in MMAU_SPLITS:
        raise ValueError(f"unknown MMAU split {split!r}; use one of {sorted(MMAU_SPLITS)}")
    mmau_dir = Path(mmau_dir)
    records = read_records(mmau_dir / MMAU_SPLITS[split])
    return write_data_dir(out_dir, [choice_list_entry(r, mmau_dir, MMAU_FORMAT) for r in records])
