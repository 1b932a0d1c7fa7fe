"""LibriSpeech (openslr.org/12): download and preparation as ASR data dirs.

The official tarballs unpack to
``LibriSpeech/<part>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`` with
one ``<speaker>-<chapter>.trans.txt`` per chapter (``<utt id> <TRANSCRIPT>``
per line) and ``LibriSpeech/SPEAKERS.TXT`` (``ID | SEX | SUBSET | MINUTES |
NAME``). Each utterance becomes one ``asr`` example whose answer is the
transcript exactly as released, upper case. (The authors' code does not show
the case of their stage-1 targets, which come ready-made in their index's
``transcription`` field; their WER, WeNet's ``compute-wer.py``, upper-cases
reference and hypothesis, so case never counts as an error.) A training part's
instruction is one of :data:`ASR_INSTRUCTIONS` (DIFFA-2 used 25 ASR
templates), picked from the utterance id with CRC-32 so that the choice is the
same on every machine and run; every other part (dev, test) gets
:data:`ASR_EVAL_INSTRUCTION`, the one the authors' ASR evaluation prompts with.
Speakers are the reader ids; labels carry the subset and, when ``SPEAKERS.TXT``
is present, the reader's gender.
"""
import zlib
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Union

from diffa.data.corpora.datadir import Entry, PrepSummary, resolve_audio, write_data_dir
from diffa.data.corpora.download import extract, fetch
from diffa.data.corpora.records import CorpusError


OPENSLR_URL = "https://www.openslr.org/resources/12"
"""Official download location (mirrors: https://openslr.elda.org/resources/12, ...)."""

LIBRISPEECH_MD5 = {
    "dev-clean": "42e2234ba48799c1f50f24a7926300a1",
    "dev-other": "c8d0bcc9cca99d4f8b62fcc847357931",
    "test-clean": "32fa31d27d2e1cad72775fee3f4849a9",
    "test-other": "fb5a50374b501bb3bac4815ee91d3135",
    "train-clean-100": "2a93770f6d5c6c964bc36631d331a522",
    "train-clean-360": "c0e676e450a7ff2f54aeade5171606fa",
    "train-other-500": "d1a0fd59409feb2c614ce4d30c387708",
}
"""MD5 of each official ``<part>.tar.gz`` (openslr.org/resources/12/md5sum.txt)."""

ASR_INSTRUCTIONS = (
    "Transcribe the audio.",
    "Please transcribe this speech into text.",
    "Write down exactly what the speaker says.",
    "Convert the spoken words in this recording into text.",
    "What does the speaker say? Give the exact words.",
    "Produce a verbatim transcript of this audio clip.",
    "Listen to the recording and write out what is said.",
    "Turn this speech into written text.",
    "Transcribe the speech in this clip word for word.",
    "Please write out the words spoken in the audio.",
    "Give me a transcription of this recording.",
    "Recognize the speech and output the transcript.",
    "Write the transcript of what you hear.",
    "Repeat the spoken content of this audio as text.",
    "Can you transcribe what is being said here?",
    "Provide the text of this spoken utterance.",
    "Transcribe the following audio into English text.",
    "What is being said in this audio? Answer with the transcript only.",
    "Write down the sentence the speaker reads.",
    "Generate an accurate transcript of the speech.",
    "Type out the words you hear in the recording.",
    "Convert this audio to text.",
    "Please provide a word-for-word transcription of the speaker.",
    "Listen carefully and transcribe the utterance.",
    "Output the exact text spoken in this recording.",
)
"""The 25 ASR instruction templates of the stage-1 (semantic alignment) data."""

ASR_EVAL_INSTRUCTION = "Please transcribe the audio to text."
"""The instruction of DIFFA-2's LibriSpeech evaluation (``run_asr_inference.sh``)."""

_GENDER = {"F": "female", "M": "male"}


def asr_instruction(utt: str) -> str:
    """The ASR instruction of an utterance, fixed by the CRC-32 of its id.

    Arguments
    ---------
    utt : str
        Utterance id.

    Returns
    -------
    str
        One of :data:`ASR_INSTRUCTIONS`.

    Example
    -------
    >>> asr_instruction("1272-128104-0000")   # in every run and process (hash() would not be)
    'Generate an accurate transcript of the speech.'
    >>> len({asr_instruction(f"u{i}") for i in range(500)})
    25
    """
    return ASR_INSTRUCTIONS[zlib.crc32(utt.encode("utf-8")) % len(ASR_INSTRUCTIONS)]


def download_librispeech(parts: Iterable[str], dest: Union[str, Path], base_url: str = OPENSLR_URL,
                         md5: Dict[str, str] = LIBRISPEECH_MD5) -> Path:
    """Download (resumably, MD5-checked) and unpack LibriSpeech parts.

    Arguments
    ---------
    parts : iterable of str
        Part names (``train-clean-100``, ..., ``test-other``).
    dest : str or Path
        Folder that receives the tarballs and the unpacked ``LibriSpeech/``.
    base_url : str
        Where ``<part>.tar.gz`` lives (``file://`` works for local copies).
    md5 : dict
        Expected MD5 per part.

    Returns
    -------
    Path
        ``<dest>/LibriSpeech``.

    Example
    -------
    >>> import tempfile, os, tarfile
    >>> from diffa.data.corpora.download import md5sum
    >>> d = tempfile.mkdtemp(); os.makedirs(os.path.join(d, "src", "LibriSpeech", "dev-clean"))
    >>> with tarfile.open(os.path.join(d, "dev-clean.tar.gz"), "w:gz") as t:
    ...     t.add(os.path.join(d, "src", "LibriSpeech"), arcname="LibriSpeech")
    >>> sums = {"dev-clean": md5sum(os.path.join(d, "dev-clean.tar.gz"))}
    >>> root = download_librispeech(["dev-clean"], os.path.join(d, "corpora"), "file://" + d, sums)
    >>> sorted(os.listdir(root))
    ['dev-clean']
    """
    dest = Path(dest)
    for part in parts:
        if part not in md5:
            raise ValueError(f"unknown LibriSpeech part {part!r}; choose from {sorted(md5)}")
        archive = fetch(f"{base_url.rstrip('/')}/{part}.tar.gz", dest / f"{part}.tar.gz", md5[part])
        extract(archive, dest)
    return dest / "LibriSpeech"


def read_speakers(librispeech_dir: Union[str, Path]) -> Dict[str, str]:
    """Reader genders from ``SPEAKERS.TXT`` (empty when the file is absent).

    Arguments
    ---------
    librispeech_dir : str or Path
        The ``LibriSpeech`` folder.

    Returns
    -------
    dict
        Speaker id -> ``"female"`` / ``"male"``.

    Example
    -------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> _ = open(os.path.join(d, "SPEAKERS.TXT"), "w").write(
    ...     ";ID  |SEX| SUBSET           |MINUTES| NAME\\n14   | F | train-clean-360  | 25.03 | Kristin\\n")
    >>> read_speakers(d)
    {'14': 'female'}
    """
    path = Path(librispeech_dir) / "SPEAKERS.TXT"
    if not path.is_file():
        return {}
    genders = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith(";"):
            continue
        fields = [f.strip() for f in line.split("|")]
        if len(fields) < 2 or fields[1] not in _GENDER:
            raise CorpusError(f"{path}:{lineno}: expected 'ID | SEX | ...' with SEX F or M, got {line!r}")
        genders[fields[0]] = _GENDER[fields[1]]
    return genders


def part_entries(librispeech_dir: Union[str, Path], part: str, genders: Dict[str, str]) -> List[Entry]:
    """ASR entries of one part, read from its ``*.trans.txt`` files.

    Arguments
    ---------
    librispeech_dir : str or Path
        The ``LibriSpeech`` folder.
    part : str
        Part name (a sub-folder).
    genders : dict
        Speaker id -> gender (see :func:`read_speakers`).

    Returns
    -------
    list of Entry
        One entry per transcript line (audio is checked later, by :func:`write_data_dir`).

    Example
    -------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp(); c = os.path.join(d, "dev-clean", "84", "121123")
    >>> os.makedirs(c)
    >>> _ = open(os.path.join(c, "84-121123.trans.txt"), "w").write("84-121123-0000 GO DO YOU HEAR\\n")
    >>> e, = part_entries(d, "dev-clean", {"84": "female"})
    >>> (e.utt, e.spk, e.text, e.row["labels"], e.path.endswith("84/121123/84-121123-0000.flac"))
    ('84-121123-0000', '84', 'GO DO YOU HEAR', {'subset': 'dev-clean', 'gender': 'female'}, True)
    """
    part_dir = Path(librispeech_dir) / part
    if not part_dir.is_dir():
        raise FileNotFoundError(
            f"{part_dir}: LibriSpeech part {part!r} not found; download it "
            f"({OPENSLR_URL}/{part}.tar.gz) or point at the folder that holds it"
        )
    entries = []
    for chapter_dir in sorted(p for p in part_dir.glob("*/*") if p.is_dir()):
        spk, chapter = chapter_dir.parent.name, chapter_dir.name
        trans = chapter_dir / f"{spk}-{chapter}.trans.txt"
        if not trans.is_file():
            raise CorpusError(f"{chapter_dir}: no {trans.name}; the part is incomplete, unpack it again")
        for lineno, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), start=1):
            where = f"{trans}:{lineno}"
            fields = line.split(maxsplit=1)
            if len(fields) != 2 or not fields[0].startswith(f"{spk}-{chapter}-"):
                raise CorpusError(f"{where}: expected '{spk}-{chapter}-<n> TRANSCRIPT', got {line!r}")
            utt, text = fields[0], fields[1].strip()
            labels = {"subset": part}
            if spk in genders:
                labels["gender"] = genders[spk]
            instruction = asr_instruction(utt) if part.startswith("train") else ASR_EVAL_INSTRUCTION
            row = {"id": utt, "utt": utt, "task": "asr", "instruction": instruction,
                   "answer": text, "labels": labels, "source": "LibriSpeech"}
            entries.append(Entry(utt=utt, path=resolve_audio(f"{utt}.flac", chapter_dir), text=text,
                                 row=row, where=where, spk=spk))
    if not entries:
        raise CorpusError(f"{part_dir}: no <speaker>/<chapter>/*.trans.txt found; is this a LibriSpeech part?")
    return entries


def prepare_librispeech(librispeech_dir: Union[str, Path], parts: Sequence[str],
                        out_dir: Union[str, Path]) -> PrepSummary:
    """Write one ASR data dir from one or more LibriSpeech parts.

    Arguments
    ---------
    librispeech_dir : str or Path
        The ``LibriSpeech`` folder (holds the part folders).
    parts : sequence of str
        Parts to merge into this set (e.g. the three training parts).
    out_dir : str or Path
        Output data dir.

    Returns
    -------
    PrepSummary
        What was written and which utterances were dropped for missing audio.

    Example
    -------
    >>> import tempfile, os, numpy as np, soundfile
    >>> d = tempfile.mkdtemp(); c = os.path.join(d, "test-clean", "61", "70968")
    >>> os.makedirs(c)
    >>> _ = open(os.path.join(c, "61-70968.trans.txt"), "w").write("61-70968-0000 HE BEGAN\\n")
    >>> soundfile.write(os.path.join(c, "61-70968-0000.flac"), np.zeros(1600, dtype="float32"), 16000)
    >>> prepare_librispeech(d, ["test-clean"], os.path.join(d, "data", "test_clean")).n_utts
    1
    """
    genders = read_speakers(librispeech_dir)
    entries = [e for part in parts for e in part_entries(librispeech_dir, part, genders)]
    return write_data_dir(out_dir, entries)
