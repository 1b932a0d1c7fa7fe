"""A tiny random DIFFA model directory, its SentencePiece tokenizer, and a small test set.

``toy`` (session-scoped) holds 24 examples over 24 utterances of 16-bin random log-mel features
(20-120 frames), task types cycling asr / mcq / open_qa with instructions of different lengths,
plus one example whose utterance has no features (listed in ``bad_utts``).
"""

from dataclasses import dataclass
from pathlib import Path
from typing import List

import kaldiio
import numpy as np
import pytest
import torch

from diffa.data.tasks import write_tasks
from diffa.model.diffa import DIFFA, tiny_config
from diffa.text.tokenizer import SentencePieceTokenizer, train_sentencepiece

SENTENCES = ["the cat sat on the mat", "what is said in the audio", "a man speaks slowly",
             "which sound do you hear", "transcribe the speech", "is the pitch high or low"]
N_MELS = 16


@dataclass
class Toy:
    root: Path
    model_dir: Path
    tokenizer: SentencePieceTokenizer
    data_dir: Path       # tasks.jsonl
    feats_dir: Path      # feats.scp, utt2num_frames, bad_utts
    tasks: List[dict]
    missing_id: str      # the example without features


def make_tasks(n: int, missing: int) -> List[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n + missing):
        task = ("asr", "mcq", "open_qa")[i % 3]
        words = " ".join(rng.choice(" ".join(SENTENCES).split(), size=1 + i % 7))
        row = {"id": f"u{i:02d}-{task}", "utt": f"u{i:02d}", "task": task,
               "instruction": f"{SENTENCES[i % len(SENTENCES)]} {words}?", "answer": words}
        if task == "mcq":
            row.update(choices=[words, "a dog"] if words != "a dog" else [words, "a cat"], gold=0)
        rows.append(row)
    return rows


def write_feats(feats_dir: Path, utts: List[str], seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    feats_dir.mkdir(parents=True, exist_ok=True)
    with kaldiio.WriteHelper(f"ark,scp:{feats_dir}/feats.ark,{feats_dir}/feats.scp") as writer:
        lengths = {}
        for utt in utts:
            lengths[utt] = int(rng.integers(20, 121))
            writer(utt, rng.standard_normal((lengths[utt], N_MELS)).astype(np.float32))
    (feats_dir / "utt2num_frames").write_text("".join(f"{u} {n}\n" for u, n in lengths.items()))


def build_model_dir(model_dir: Path, vocab_texts: List[str]) -> SentencePieceTokenizer:
    """Train the tokenizer, then save a random tiny DIFFA of the same vocabulary beside it."""
    spm_path = model_dir.parent / "spm" / "spm.model"
    tok = SentencePieceTokenizer(train_sentencepiece(vocab_texts, spm_path, vocab_size=300))
    torch.manual_seed(0)
    model = DIFFA(tiny_config(vocab=tok.vocab_size, n_mels=N_MELS))
    # peaked logits: confidences far apart, as in a trained model (argmax ties are then rare)
    model.llm.init_weights(std=0.3, generator=torch.Generator().manual_seed(1))
    model.save_pretrained(model_dir)
    (model_dir / "tokenizer").mkdir()
    (model_dir / "tokenizer" / "spm.model").write_bytes(spm_path.read_bytes())
    return tok


@pytest.fixture(scope="session")
def toy(tmp_path_factory) -> Toy:
    root = tmp_path_factory.mktemp("decode_toy")
    tasks = make_tasks(24, missing=1)
    tok = build_model_dir(root / "model", SENTENCES * 4)
    write_tasks(str(root / "data" / "tasks.jsonl"), tasks)
    missing = tasks[-1]
    write_feats(root / "dump", [t["utt"] for t in tasks[:-1]])
    (root / "dump" / "bad_utts").write_text(f"{missing['utt']} missing data/wav/{missing['utt']}.wav does not exist\n")
    return Toy(root, root / "model", tok, root / "data", root / "dump", tasks, missing["id"])


def single_thread():
    """Tiny models decode fastest on one thread (no OpenMP hand-offs on a shared CPU)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


one_thread = pytest.fixture(scope="module", autouse=True, name="one_thread")(single_thread)
