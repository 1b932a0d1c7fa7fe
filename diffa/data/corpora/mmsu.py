"""MMSU test set (5,000 items, 47 tasks) as ``data/mmsu``.

Layout (the authors' evaluation reads ``MMSU/question/mmsu.jsonl``): one JSON
object per line with the fields of the released benchmark

``id, task_name, audio_path, question, choice_a, choice_b, choice_c, choice_d,
answer_gt, category, sub-category, sub-sub-category, linguistics_sub_discipline``

where ``choice_c`` / ``choice_d`` may be null (two- or three-way items) and
``answer_gt`` is the *text* of the correct choice. Relative ``audio_path``
values are taken relative to the MMSU folder. Rows are prompted with
:func:`diffa.data.corpora.mcq.mmsu_instruction`, exactly as DIFFA was scored.
"""
from pathlib import Path
from typing import List, Optional, Union

from diffa.data.corpora.datadir import Entry, PrepSummary, write_data_dir
from diffa.data.corpora.mcq import mcq_entry, mmsu_instruction, scalar_labels
from diffa.data.corpora.records import CorpusError, Record, read_records


MMSU_JSONL = Path("question") / "mmsu.jsonl"
"""Index file inside the MMSU folder."""

CHOICE_KEYS = ("choice_a", "choice_b", "choice_c", "choice_d")
LABEL_KEYS = ("task_name", "category", "sub-category", "sub-sub-category", "linguistics_sub_discipline")


def mmsu_entries(jsonl: Union[str, Path], root: Union[str, Path]) -> List[Entry]:
    """Entries of the MMSU index.

    Arguments
    ---------
    jsonl : str or Path
        ``question/mmsu.jsonl``.
    root : str or Path
        Folder that relative ``audio_path`` values start from.

    Returns
    -------
    list of Entry
        One ``mcq`` entry per item (labels carry task_name and the category levels).

    Example
    -------
    >>> import tempfile, os, json
    >>> d = tempfile.mkdtemp(); p = os.path.join(d, "mmsu.jsonl")
    >>> item = {"id": "stress_1", "task_name": "stress", "audio_path": "audio/s1.wav", "question": "Q?",
    ...         "choice_a": "he", "choice_b": "saw", "choice_c": None, "choice_d": None,
    ...         "answer_gt": "saw", "category": "Phonology", "sub-category": "Perception"}
    >>> _ = open(p, "w").write(json.dumps(item) + "\\n")
    >>> e, = mmsu_entries(p, "/MMSU")
    >>> (e.row["choices"], e.row["gold"], e.path, e.row["labels"]["task_name"])
    (['he', 'saw'], 1, '/MMSU/audio/s1.wav', 'stress')
    """
    def entry(record: Record) -> Entry:
        given = [record.fields.get(k) is not None for k in CHOICE_KEYS]
        choices = [record.fields[k] for k, present in zip(CHOICE_KEYS, given) if present]
        # a gap (choice_c null, choice_d set) would shift the letters the prompt shows: D would read C
        if len(choices) < 2 or given != sorted(given, reverse=True) or not all(isinstance(c, str) for c in choices):
            raise CorpusError(
                f"{record.where}: item {record.fields.get('id')!r}: needs string choice_a and choice_b "
                f"(choice_c/choice_d optional, in order), got {[record.fields.get(k) for k in CHOICE_KEYS]!r}; "
                "fix the index file"
            )
        return mcq_entry(
            record, record.get_str("audio_path"), root,
            mmsu_instruction(record.get_str("question"), choices), choices,
            record.get_str("answer_gt"), scalar_labels(record.fields, LABEL_KEYS), "MMSU",
        )

    return [entry(record) for record in read_records(jsonl)]


def prepare_mmsu(mmsu_dir: Union[str, Path], out_dir: Union[str, Path],
                 jsonl: Optional[Union[str, Path]] = None) -> PrepSummary:
    """Write ``data/mmsu`` from an MMSU folder.

    Arguments
    ---------
    mmsu_dir : str or Path
        The MMSU folder (relative audio paths start here).
    out_dir : str or Path
        Output data dir.
    jsonl : str or Path, optional
        The index; default ``<mmsu_dir>/question/mmsu.jsonl``.

    Returns
    -------
    PrepSummary
        What was written, which items were dropped for missing audio, which answers are none of their choices.

    Example
    -------
    >>> import tempfile, os, json, numpy as np, soundfile
    >>> d = tempfile.mkdtemp(); os.makedirs(os.path.join(d, "question"))
    >>> soundfile.write(os.path.join(d, "a.wav"), np.zeros(1600, dtype="float32"), 16000)
    >>> item = {"id": "t_1", "task_name": "t", "audio_path": "a.wav", "question": "Q?",
    ...         "choice_a": "x", "choice_b": "y", "answer_gt": "x"}
    >>> _ = open(os.path.join(d, "question", "mmsu.jsonl"), "w").write(json.dumps(item) + "\\n")
    >>> prepare_mmsu(d, os.path.join(d, "data", "mmsu")).n_rows
    1
    """
    mmsu_dir = Path(mmsu_dir)
    return write_data_dir(out_dir, mmsu_entries(jsonl or mmsu_dir / MMSU_JSONL, mmsu_dir))
