"""Tiny fake corpora in their official layouts, with espeak-ng speech converted by sox.

Every fixture builds its corpus under ``tmp_path / "corpora" / <folder>`` (the
folder names ``--corpora_root`` expects), so a test can combine several and
point a recipe at ``tmp_path / "corpora"``.
"""
import hashlib
import json
import subprocess
from pathlib import Path

import pytest

LIBRI_TEXT = {
    "train-clean-100": {"19": {"198": ["THE BIRDS SANG", "IT WAS A FINE DAY"]},
                        "103": {"1240": ["SHE OPENED THE DOOR"]}},
    "train-clean-360": {"14": {"208": ["HE WALKED HOME"]}},
    "dev-clean": {"84": {"121123": ["GO DO YOU HEAR"]}},
    "test-clean": {"61": {"70968": ["HE BEGAN A CONFUSED COMPLAINT"]}},
}
SPEAKERS_TXT = """\
; LibriSpeech speakers
;ID  |SEX| SUBSET           |MINUTES| NAME
14   | F | train-clean-360  | 25.03 | Kristin LeMoine
19   | F | train-clean-100  | 25.19 | Kara Shallenberg
61   | M | test-clean       |  8.08 | Paul-Gabriel Wiener
84   | F | dev-clean        |  8.02 | Christie Nowak
103  | F | train-clean-100  | 25.11 | Karen Savage
"""


@pytest.fixture(scope="session")
def speech(tmp_path_factory):
    """``speech(text, dest)``: espeak-ng says ``text``; sox writes ``dest`` (16 kHz mono, format from suffix)."""
    cache = tmp_path_factory.mktemp("espeak")

    def make(text: str, dest: Path) -> Path:
        src = cache / (hashlib.md5(text.encode()).hexdigest() + ".wav")
        if not src.exists():
            subprocess.run(["espeak-ng", "-s", "260", "-w", str(src), text], check=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["sox", str(src), "-r", "16000", "-c", "1", str(dest)], check=True)
        return dest

    return make


@pytest.fixture
def corpora(tmp_path):
    """The ``--corpora_root`` folder of a test."""
    root = tmp_path / "corpora"
    root.mkdir()
    return root


@pytest.fixture
def librispeech(corpora, speech):
    """``corpora/LibriSpeech`` with the parts of ``LIBRI_TEXT`` and ``SPEAKERS.TXT``."""
    root = corpora / "LibriSpeech"
    for part, speakers in LIBRI_TEXT.items():
        for spk, chapters in speakers.items():
            for chapter, texts in chapters.items():
                folder = root / part / spk / chapter
                lines = []
                for n, text in enumerate(texts):
                    utt = f"{spk}-{chapter}-{n:04d}"
                    speech(text.lower(), folder / f"{utt}.flac")
                    lines.append(f"{utt} {text}\n")
                (folder / f"{spk}-{chapter}.trans.txt").write_text("".join(lines))
    (root / "SPEAKERS.TXT").write_text(SPEAKERS_TXT)
    return root


def _write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2))
    return path


def _write_jsonl(path: Path, items) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    return path


def _benchmark(root: Path, speech, items, audio_key: str, spoken, meta: str, write) -> Path:
    """Benchmark folder ``root``: ``spoken[i]`` said at ``items[i][audio_key]``, ``items`` in ``meta``."""
    for item, text in zip(items, spoken, strict=True):
        speech(text, root / item[audio_key])
    write(root / meta, items)
    return root


AUTHORS_QA = [
    {"audio_id": "p225_001", "audio_filepath": "wavs/p225_001.wav", "transcription": "",
     "input": "What is the speaker's gender?", "target": "The speaker is a woman.",
     "dataset": "VCTK", "duration": 1.1, "seed_transcript": "please call stella", "gender": "female"},
    {"audio_id": "p225_001", "audio_filepath": "wavs/p225_001.wav", "transcription": "",
     "input": "Describe the speaking rate.", "target": "She speaks quickly.",
     "dataset": "VCTK", "duration": 1.1, "seed_transcript": "please call stella", "gender": "female"},
    {"audio_id": "Ses01F_impro01_F000", "audio_filepath": "wavs/Ses01F_impro01_F000.wav",
     "transcription": "excuse me", "input": "What emotion do you hear?", "target": "A neutral tone.",
     "dataset": "IEMOCAP", "duration": 0.9, "seed_transcript": ""},
]
AUTHORS_PREF = [
    dict(AUTHORS_QA[0], rejected="The speaker is a man."),
    dict(AUTHORS_QA[2], rejected="An angry tone."),
]


@pytest.fixture
def authors_json(corpora, speech):
    """``corpora/authors_json`` with ``train_qa.json``, ``train_pref.json`` and their audio."""
    root = corpora / "authors_json"
    for item in AUTHORS_QA:
        speech(item["seed_transcript"] or item["transcription"], root / item["audio_filepath"])
    _write_json(root / "train_qa.json", AUTHORS_QA)
    _write_json(root / "train_pref.json", AUTHORS_PREF)
    return root


AUTHORS_ASR = [
    {"audio_id": "POD0000000004_S0000017", "audio_filepath": "POD0000000004_S0000017.flac",
     "transcription": "AS THEY WALKED HOME", "input": "Please write down what the speaker says.",
     "target": "AS THEY WALKED HOME", "dataset": "GigaSpeech", "duration": 1.2, "seed_transcript": ""},
]


@pytest.fixture
def authors_stage_files(corpora, speech):
    """``corpora/DIFFA-data`` laid out as the authors' DIFFA-2 scripts read it, with absolute
    ``audio_filepath`` values as released: ``stage1/data.json`` (ASR), ``sft/merged_data.json``
    (stage 2: the first two QA items), ``stage3/merged_data.json`` (stage 3: the third) and
    ``vrpo/data.json`` (preference pairs)."""
    root = corpora / "DIFFA-data"

    def index(path, items):
        placed = []
        for item in items:
            audio = root / "audio" / Path(item["audio_filepath"]).name
            if not audio.exists():
                speech(item["seed_transcript"] or item["transcription"], audio)
            placed.append(dict(item, audio_filepath=str(audio)))
        _write_json(root / path, placed)

    index("stage1/data.json", AUTHORS_ASR)
    index("sft/merged_data.json", AUTHORS_QA[:2])
    index("stage3/merged_data.json", AUTHORS_QA[2:])
    index("vrpo/data.json", AUTHORS_PREF)
    return root


MMSU_ITEMS = [
    {"id": "syllable_counting_0001", "task_name": "syllable_counting", "audio_path": "audio/syl_0001.wav",
     "question": "How many syllables does the word have?", "choice_a": "one", "choice_b": "two",
     "choice_c": "three", "choice_d": "four", "answer_gt": "three", "category": "Perception",
     "sub-category": "Phonology", "sub-sub-category": "Phonetics", "linguistics_sub_discipline": "phonetics"},
    {"id": "sarcasm_detection_0002", "task_name": "sarcasm_detection", "audio_path": "audio/sar_0002.wav",
     "question": "Is the speaker being sarcastic?", "choice_a": "yes", "choice_b": "no",
     "choice_c": None, "choice_d": None, "answer_gt": "no", "category": "Reasoning",
     "sub-category": "Semantics", "sub-sub-category": "Pragmatics", "linguistics_sub_discipline": "pragmatics"},
]


@pytest.fixture
def mmsu(corpora, speech):
    """``corpora/MMSU`` with ``question/mmsu.jsonl`` and its audio."""
    return _benchmark(corpora / "MMSU", speech, MMSU_ITEMS, "audio_path",
                      ["banana", "oh great, another meeting"], "question/mmsu.jsonl", _write_jsonl)


MMAU_ITEMS = [
    {"id": "3fe64f3d-282c-4bc8-a753-68f8f6c35652",
     "audio_id": "./test-mini-audios/3fe64f3d-282c-4bc8-a753-68f8f6c35652.wav",
     "question": "Based on the given audio, identify the source of the speaking voice.",
     "choices": ["Man", "Woman", "Child", "Robot"], "answer": "Man", "dataset": "AudioSet", "task": "sound",
     "split": "test-mini", "category": "Reasoning", "sub-category": "Acoustic Source Inference",
     "difficulty": "medium"},
    {"id": "0c0a8d2b-5e7f-4f1b-9d8e-2f6a1b3c4d5e",
     "audio_id": "./test-mini-audios/0c0a8d2b-5e7f-4f1b-9d8e-2f6a1b3c4d5e.wav",
     "question": "What is the speaker counting?", "choices": ["Numbers", "Letters", "Colors"],
     "answer": "Numbers", "dataset": "LibriSpeech", "task": "speech", "split": "test-mini",
     "category": "Information Extraction", "sub-category": "Content", "difficulty": "easy"},
]


@pytest.fixture
def mmau(corpora, speech):
    """``corpora/MMAU`` with ``mmau-test-mini.json`` and ``test-mini-audios/``."""
    return _benchmark(corpora / "MMAU", speech, MMAU_ITEMS, "audio_id",
                      ["hello there", "one two three"], "mmau-test-mini.json", _write_json)


MMAR_ITEMS = [
    {"id": "BV1NtQuYTELJ_00-00-00_00-00-26", "audio_path": "./audio/BV1NtQuYTELJ_00-00-00_00-00-26.wav",
     "question": "Which accent does the speaker imitate?", "choices": ["British", "American", "Australian"],
     "answer": "British", "modality": "speech", "category": "Paralinguistic Layer", "sub-category": "Accent",
     "language": "en", "source": "bilibili", "url": "https://example.org/v", "timestamp": "00:00:00,00:00:26"},
    {"id": "demo_0001", "audio_path": "./audio/demo_0001.wav", "question": "What is producing the sound?",
     "choices": ["Owl", "Robot", "Rooster", "Parrot"], "answer": "Robot", "modality": "sound-speech",
     "category": "Semantic Layer", "sub-category": "Source Analysis", "language": "en",
     "source": "youtube", "url": "https://example.org/w", "timestamp": "00:11:10,00:11:30"},
]


@pytest.fixture
def mmar(corpora, speech):
    """``corpora/MMAR`` with ``MMAR-meta.json`` and ``audio/``."""
    return _benchmark(corpora / "MMAR", speech, MMAR_ITEMS, "audio_path",
                      ["lovely weather, innit", "beep boop"], "MMAR-meta.json", _write_json)


@pytest.fixture
def all_corpora(corpora, librispeech, authors_json, mmsu, mmau, mmar):
    """Every fake corpus under one ``--corpora_root``."""
    return corpora

