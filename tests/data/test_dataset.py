"""diffa.data.dataset: TaskDataset rows, missing features, frame counts from utt2num_frames."""

import kaldiio
import numpy as np
import pytest

from diffa.data.dataset import TaskDataset
from diffa.data.tasks import write_tasks
from diffa.text.tokenizer import SentencePieceTokenizer, train_sentencepiece

FRAMES = {"u1": 30, "u2": 20, "u3": 10}


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    path = tmp_path_factory.mktemp("spm") / "spm.model"
    return SentencePieceTokenizer(train_sentencepiece(["what is said hello world"] * 8, path, vocab_size=60,
                                                      byte_fallback=False))


@pytest.fixture
def dump(tmp_path):
    """A dump directory with three utterances, their frame counts and one ASR example each."""
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path}/feats.ark,{tmp_path}/feats.scp") as writer:
        for utt, frames in FRAMES.items():
            writer(utt, np.zeros((frames, 4), dtype=np.float32))
    (tmp_path / "utt2num_frames").write_text("".join(f"{u} {n}\n" for u, n in FRAMES.items()))
    write_tasks(str(tmp_path / "tasks.jsonl"), [
        {"id": f"{u}-asr", "utt": u, "task": "asr", "instruction": "what is said", "answer": "hello world"}
        for u in FRAMES])
    return tmp_path


def _open(dump, tok):
    return TaskDataset(str(dump / "tasks.jsonl"), str(dump / "feats.scp"), tok)


def test_frames_come_from_utt2num_frames_or_the_features(dump, tok):
    assert _open(dump, tok).num_frames() == [30, 20, 10]
    (dump / "utt2num_frames").write_text("u1 7\nu2 8\nu3 9\n")
    assert _open(dump, tok).num_frames() == [7, 8, 9]
    (dump / "utt2num_frames").unlink()
    assert _open(dump, tok).num_frames() == [30, 20, 10]


@pytest.mark.parametrize("content, missing", [("", "3 utterances with features (first: u1)"),
                                              ("u1 30\n", "2 utterances with features (first: u2)")])
def test_an_empty_or_truncated_utt2num_frames_is_refused_on_open(dump, tok, content, missing):
    (dump / "utt2num_frames").write_text(content)
    with pytest.raises(ValueError) as err:
        _open(dump, tok)
    assert str(err.value) == (f"{dump}/utt2num_frames has no entry for {missing}: "
                              "rerun stage 2 (feature extraction)")


def test_a_line_cut_short_in_utt2num_frames_names_the_line(dump, tok):
    (dump / "utt2num_frames").write_text("u1 30\nu2\n")
    with pytest.raises(ValueError, match=f"^{dump}/utt2num_frames:2: bad value for 'u2'"):
        _open(dump, tok)
