"""diffa.train.pair_sampler: answers sampled from a tiny DIFFA (mode 'sampled' of the preference pairs)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from diffa.model.diffa import DIFFA, tiny_config
from diffa.text.tokenizer import SentencePieceTokenizer, train_sentencepiece
from diffa.train import pair_sampler
from diffa.train.pair_sampler import ModelSampler
from diffa.train.pairs import build_pairs


def test_model_sampler_runs_a_tiny_model(tmp_path):

    tok = SentencePieceTokenizer(train_sentencepiece(["male female who speaks pink white"] * 4, tmp_path / "spm.model",
                                                     vocab_size=60, byte_fallback=False))
    torch.manual_seed(0)
    model = DIFFA(tiny_config(vocab=tok.vocab_size)).train()
    feats = {u: np.random.default_rng(i).normal(size=(30 + 10 * i, 16)).astype(np.float32) for i, u in enumerate("abc")}
    rows = [{"id": f"{u}-0", "utt": u, "task": "open_qa", "instruction": "who speaks", "answer": "male"} for u in "abc"]
    sampler = ModelSampler(model, tok, feats, n_samples=3, gen_length=4, batch_size=2, temperature=1.0)
    answers = sampler(rows)
    assert [len(a) for a in answers] == [3, 3, 3] and all(isinstance(s, str) for a in answers for s in a)
    assert model.training  # the model's mode is restored
    assert sampler(rows) == answers  # seeded: the same samples again
    pairs, stats = build_pairs(rows, modes=("sampled",), sampler=sampler)
    assert all(p["rejected"] != "male" for p in pairs) and len(pairs) + stats["skipped:sampled"] == 3
    with pytest.raises(ValueError, match="utterance 'zz' has no features"):
        sampler([dict(rows[0], utt="zz")])


def test_model_sampler_resumes_from_its_cache(tmp_path):

    tok = SentencePieceTokenizer(train_sentencepiece(["male female who speaks"] * 4, tmp_path / "spm.model",
                                                     vocab_size=60, byte_fallback=False))
    torch.manual_seed(0)
    model = DIFFA(tiny_config(vocab=tok.vocab_size))
    feats = {u: np.zeros((30, 16), np.float32) for u in "abc"}
    rows = [{"id": f"{u}-0", "utt": u, "task": "open_qa", "instruction": "who speaks", "answer": "male"} for u in "abc"]
    cache = tmp_path / "sampling" / "train.jsonl"
    cache.parent.mkdir()
    # an earlier run sampled a, then was killed while writing b
    Path(str(cache) + ".partial").write_text('{"id": "a-0", "samples": ["from the cache"]}\n{"id": "b-0", "sam')
    sampler = ModelSampler(model, tok, feats, n_samples=2, gen_length=4, batch_size=1, cache=str(cache))
    sampled = []
    real = sampler._examples
    sampler._examples = lambda batch: sampled.extend(r["id"] for r in batch) or real(batch)
    answers = sampler(rows)
    assert answers[0] == ["from the cache"] and sampled == ["b-0", "c-0"] and len(answers[2]) == 2
    stored = [json.loads(line) for line in Path(str(cache) + ".partial").read_text().splitlines()]
    assert [r["id"] for r in stored] == ["a-0", "b-0", "c-0"] and stored[2]["samples"] == answers[2]
    assert ModelSampler(model, tok, {}, cache=str(cache))(rows) == answers  # all from the cache: no features read


def test_model_sampler_halves_a_batch_that_runs_out_of_memory(tmp_path, monkeypatch):

    tok = SentencePieceTokenizer(train_sentencepiece(["male female who speaks"] * 4, tmp_path / "spm.model",
                                                     vocab_size=60, byte_fallback=False))
    model = DIFFA(tiny_config(vocab=tok.vocab_size))
    feats = {u: np.zeros((30 + 10 * i, 16), np.float32) for i, u in enumerate("abcd")}
    rows = [{"id": f"{u}-0", "utt": u, "task": "open_qa", "instruction": "who speaks", "answer": "male"} for u in "abcd"]
    real, sizes = pair_sampler.decode_batch, []

    def limited(model, tokenizer, batch, *args, **kwargs):  # a GPU that holds 2 rows, and not d's audio
        sizes.append(len(batch["feat_lens"]))
        if len(batch["feat_lens"]) > 2 or int(batch["feat_lens"].max()) == 60:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(model, tokenizer, batch, *args, **kwargs)

    monkeypatch.setattr(pair_sampler, "decode_batch", limited)
    answers = ModelSampler(model, tok, feats, n_samples=2, gen_length=4, batch_size=4)(rows)
    assert [len(a) for a in answers] == [2, 2, 2, 0]  # d fits not even alone: no samples, so no pair
    assert sizes == [4, 2, 2, 1, 1]
