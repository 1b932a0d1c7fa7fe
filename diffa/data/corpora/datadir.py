"""Writing a prepared set as a Kaldi data dir plus its ``tasks.jsonl``.

Every corpus preparer turns its index into a list of :class:`Entry` (one
example: an utterance, its audio, its transcript and one task row) and hands
it to :func:`write_data_dir`, which

- drops examples whose audio is missing or unreadable (logged by id, counted
  in the returned :class:`PrepSummary`),
- measures every utterance with ``soundfile.info`` (``utt2dur``),
- checks that ids are unique and that an utterance always names one file,
- writes ``wav.scp text utt2spk spk2utt utt2dur`` (:mod:`diffa.data.kaldi`)
  and ``tasks.jsonl`` (:mod:`diffa.data.tasks`, validated), sorted by id in
  C-locale byte order, into a temporary directory that replaces ``out_dir``
  only when complete.

:func:`link_data_dir` makes a set a relative link to another set of the same
folder instead (one index serving two training stages); either replaces a
link or a directory that was there, never what a link points to.
"""
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Union

import soundfile
from tqdm import tqdm

from diffa.data.corpora.records import CorpusError
from diffa.data.kaldi import utt2spk_to_spk2utt, write_map
from diffa.data.tasks import write_tasks

logger = logging.getLogger(__name__)

NOSPEECH = "<nospeech>"
"""The ``text`` of an utterance without a transcript (a sound clip, say)."""

_SPACE = re.compile(r"\s+")


@dataclass
class Entry:
    """One example of a prepared set.

    Arguments
    ---------
    utt : str
        Utterance id (no whitespace); several entries may share one utterance.
    path : str
        Audio file of the utterance (absolute, any format soundfile reads).
    text : str
        Transcript for the ``text`` file; ``NOSPEECH`` when there is none.
    row : dict
        The ``tasks.jsonl`` row (``id``, ``utt``, ``task``, ``instruction``, ...).
    where : str
        ``file:line`` of the source record, for error messages.
    spk : str, optional
        Speaker id; defaults to the utterance id (Kaldi's convention when the
        speaker is unknown). ``utt`` must start with ``spk + "-"`` so that
        ``utt2spk`` and ``spk2utt`` sort consistently.

    Example
    -------
    >>> e = Entry("spk1-u1", "/data/u1.wav", "HELLO", {"id": "spk1-u1-asr"}, "index.json:4", spk="spk1")
    >>> e.utt.startswith(e.spk + "-"), Entry("u2", "/data/u2.wav", NOSPEECH, {}, "index.json:5").spk
    (True, None)
    """

    utt: str
    path: str
    text: str
    row: Dict
    where: str
    spk: Optional[str] = None


@dataclass
class PrepSummary:
    """What :func:`write_data_dir` wrote and what it dropped.

    Arguments
    ---------
    out_dir : Path
        The data dir.
    n_utts : int
        Utterances written.
    n_rows : int
        Task rows written.
    hours : float
        Total audio duration of the written utterances.
    dropped : list of str
        Example ids dropped because their audio is missing or unreadable.
    unmatched : list of str
        Ids of written multiple-choice rows whose answer is none of their choices (``gold`` null:
        scored by the answer text, see :func:`diffa.data.corpora.mcq.mcq_entry`).

    Example
    -------
    What :func:`write_data_dir` returns for a 2.25-s clip and an example whose audio is missing:

    >>> import tempfile, numpy as np
    >>> d = tempfile.mkdtemp(); wav = os.path.join(d, "a.wav")
    >>> soundfile.write(wav, np.zeros(36000, np.float32), 16000)
    >>> row = dict(id="u1-0", utt="u1", task="open_qa", instruction="Q?", answer="A.")
    >>> s = write_data_dir(os.path.join(d, "set"), [Entry("u1", wav, "HI", row, "x.json:1"),
    ...                    Entry("u2", wav + ".gone", "HO", dict(row, id="u2-0", utt="u2"), "x.json:2")])
    >>> s.out_dir.name, s.n_utts, s.n_rows, round(s.hours * 3600, 2), s.dropped, s.unmatched
    ('set', 1, 1, 2.25, ['u2-0'], [])
    """

    out_dir: Path
    n_utts: int
    n_rows: int
    hours: float
    dropped: List[str] = field(default_factory=list)
    unmatched: List[str] = field(default_factory=list)


def sanitize_id(raw: str, where: str) -> str:
    """Turn a corpus id into a Kaldi id (whitespace becomes ``_``).

    Arguments
    ---------
    raw : str
        Id from the corpus.
    where : str
        ``file:line`` for the error message.

    Returns
    -------
    str
        The id with each whitespace run replaced by ``_``.

    Example
    -------
    >>> sanitize_id(" a b\\tc ", "x.json:1")
    'a_b_c'
    >>> sanitize_id("  ", "x.json:1")
    Traceback (most recent call last):
    ...
    diffa.data.corpora.records.CorpusError: x.json:1: empty id; give every record a non-empty id
    """
    clean = _SPACE.sub("_", raw.strip())
    if not clean:
        raise CorpusError(f"{where}: empty id; give every record a non-empty id")
    return clean


def one_line(text: str) -> str:
    """Collapse whitespace (newlines included) so that a transcript fits one Kaldi line.

    Arguments
    ---------
    text : str
        Any text.

    Returns
    -------
    str
        The text with runs of whitespace replaced by one space, stripped.

    Example
    -------
    >>> one_line(" HELLO\\n  WORLD ")
    'HELLO WORLD'
    """
    return _SPACE.sub(" ", text).strip()


def resolve_audio(path: str, root: Union[str, Path]) -> str:
    """Absolute audio path: absolute paths stay, relative ones are joined to ``root``.

    Arguments
    ---------
    path : str
        Path from the index (``./audio/x.wav``, ``audio/x.wav`` or absolute).
    root : str or Path
        Folder that relative paths are relative to.

    Returns
    -------
    str
        The absolute, normalised path (the file need not exist).

    Example
    -------
    >>> resolve_audio("./test-mini-audios/a.wav", "/data/MMAU")
    '/data/MMAU/test-mini-audios/a.wav'
    >>> resolve_audio("/abs/b.flac", "/data/MMAU")
    '/abs/b.flac'
    """
    p = Path(path)
    if not p.is_absolute():
        p = Path(root) / p
    return os.path.normpath(os.path.abspath(p))


def audio_duration(path: str) -> Optional[float]:
    """Duration in seconds from the file header, or None when missing, unreadable or empty.

    Arguments
    ---------
    path : str
        Audio file.

    Returns
    -------
    float or None
        ``frames / samplerate``; None if the file is absent, soundfile cannot read it,
        or it holds no samples.

    Example
    -------
    >>> import tempfile, os, numpy as np, soundfile
    >>> p = os.path.join(tempfile.mkdtemp(), "a.flac")
    >>> soundfile.write(p, np.zeros(8000, dtype="float32"), 16000)
    >>> audio_duration(p), audio_duration(p + ".missing")
    (0.5, None)
    """
    try:
        info = soundfile.info(path)
    except (RuntimeError, OSError):  # soundfile.LibsndfileError is a RuntimeError
        return None
    if info.samplerate <= 0 or info.frames <= 0:
        return None
    return info.frames / info.samplerate


def write_data_dir(out_dir: Union[str, Path], entries: Iterable[Entry]) -> PrepSummary:
    """Write a Kaldi data dir and its ``tasks.jsonl`` from prepared entries.

    Arguments
    ---------
    out_dir : str or Path
        ``data/<set>``; replaced as a whole once every file is written.
    entries : iterable of Entry
        The examples (any order).

    Returns
    -------
    PrepSummary
        Counts, hours, the ids of examples dropped for missing/unreadable audio and the unmatched ids.

    Raises
    ------
    CorpusError
        Duplicate example ids, one utterance naming two files, or no usable audio at all.

    Example
    -------
    >>> import tempfile, os, numpy as np, soundfile
    >>> d = tempfile.mkdtemp()
    >>> wav = os.path.join(d, "a.wav")
    >>> soundfile.write(wav, np.zeros(16000, dtype="float32"), 16000)
    >>> rows = [dict(id=i, utt="u1", task="open_qa", instruction="Q?", answer="A.") for i in ("u1-0", "u1-1")]
    >>> es = [Entry("u1", wav, "HI", r, "x.json:1") for r in rows]
    >>> es.append(Entry("u2", wav + ".gone", "HO", dict(rows[0], id="u2-0", utt="u2"), "x.json:3"))
    >>> s = write_data_dir(os.path.join(d, "data", "set"), es)
    >>> (s.n_utts, s.n_rows, s.dropped)
    (1, 2, ['u2-0'])
    >>> print(open(os.path.join(d, "data", "set", "utt2dur")).read(), end="")
    u1 1.0000
    """
    out_dir = Path(out_dir)
    entries = list(entries)
    _check_unique_ids(entries)
    groups = _group_utterances(entries)
    durations: Dict[str, float] = {}
    dropped: List[str] = []
    for utt, group in tqdm(groups.items(), desc=f"{out_dir.name}: audio headers", unit="utt", disable=None):
        dur = audio_duration(group[0].path)
        if dur is None:
            dropped.extend(e.row["id"] for e in group)
        else:
            durations[utt] = dur
    if dropped:
        logger.warning(
            "%s: %d example(s) dropped, audio missing or unreadable: %s%s",
            out_dir, len(dropped), ", ".join(dropped[:10]), " ..." if len(dropped) > 10 else "",
        )
    kept = [e for e in entries if e.utt in durations]
    if not kept:
        raise CorpusError(
            f"{out_dir}: none of the {len(entries)} examples has readable audio "
            f"(first missing: {entries[0].path if entries else 'no entries'}); check the corpus path"
        )
    _write_dir(out_dir, {u: groups[u][0] for u in durations}, durations, kept)
    summary = PrepSummary(
        out_dir=out_dir, n_utts=len(durations), n_rows=len(kept),
        hours=sum(durations.values()) / 3600.0, dropped=dropped,
        unmatched=[e.row["id"] for e in kept if e.row["task"] == "mcq" and e.row["gold"] is None],
    )
    logger.info("%s: %d utterances (%.2f h), %d task rows", out_dir, summary.n_utts, summary.hours, summary.n_rows)
    return summary


def link_data_dir(out_dir: Union[str, Path], target: str) -> None:
    """Make a data dir a relative link to another data dir beside it.

    Arguments
    ---------
    out_dir : str or Path
        ``data/<set>``; a directory or link there is replaced.
    target : str
        The name of the set it stands for (``data/<target>``).

    Example
    -------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp(); os.makedirs(os.path.join(d, "train_qa"))
    >>> link_data_dir(os.path.join(d, "train_qa_stage2"), "train_qa")
    >>> os.readlink(os.path.join(d, "train_qa_stage2"))
    'train_qa'
    """
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    _remove(tmp)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.symlink_to(target, target_is_directory=True)
    _swap_in(tmp, out_dir)


def _check_unique_ids(entries: List[Entry]) -> None:
    seen: Dict[str, str] = {}
    for e in entries:
        rid = e.row["id"]
        if rid in seen:
            raise CorpusError(f"{e.where}: example id {rid!r} already used at {seen[rid]}; ids must be unique")
        seen[rid] = e.where


def _group_utterances(entries: List[Entry]) -> Dict[str, List[Entry]]:
    groups: Dict[str, List[Entry]] = {}
    for e in entries:
        if any(c.isspace() for c in e.utt):
            raise CorpusError(f"{e.where}: utterance id {e.utt!r} contains whitespace")
        if e.spk is not None and not e.utt.startswith(e.spk + "-"):
            raise CorpusError(f"{e.where}: speaker {e.spk!r} is not a '-'-terminated prefix of utterance {e.utt!r}")
        group = groups.setdefault(e.utt, [])
        if group and group[0].path != e.path:
            raise CorpusError(
                f"{e.where}: utterance {e.utt!r} names {e.path} but {group[0].where} named "
                f"{group[0].path}; one id must name one audio file"
            )
        group.append(e)
    return groups


def _write_dir(out_dir: Path, utts: Dict[str, Entry], durations: Dict[str, float], rows: List[Entry]) -> None:
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    _remove(tmp)
    utt2spk = {u: e.spk or u for u, e in utts.items()}
    try:
        write_map(str(tmp / "wav.scp"), {u: e.path for u, e in utts.items()})
        write_map(str(tmp / "text"), {u: one_line(e.text) or NOSPEECH for u, e in utts.items()})
        write_map(str(tmp / "utt2spk"), utt2spk)
        write_map(str(tmp / "spk2utt"), utt2spk_to_spk2utt(utt2spk))
        write_map(str(tmp / "utt2dur"), {u: f"{d:.4f}" for u, d in durations.items()})
        write_tasks(str(tmp / "tasks.jsonl"), [e.row for e in rows])
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap_in(tmp, out_dir)


def _swap_in(tmp: Path, out_dir: Path) -> None:
    old = out_dir.with_name(out_dir.name + ".old")
    _remove(old)
    if out_dir.is_symlink() or out_dir.exists():
        out_dir.rename(old)
    tmp.rename(out_dir)
    _remove(old)


def _remove(path: Path) -> None:
    """Remove a data dir, or a link to one (not the directory it points to)."""
    if path.is_symlink():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
