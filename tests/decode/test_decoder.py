"""Batched decoding: the batch is invisible, failures are rows, memory errors split the batch."""

import pytest
import torch

from diffa.data.dataset import TaskDataset
from diffa.data.tasks import write_tasks
from diffa.decode import decoder
from diffa.decode.config import DecodeConfig
from diffa.decode.decoder import answer_text, decode_dataset
from diffa.decode.loading import load_for_decoding


@pytest.fixture(scope="module")
def loaded(toy):
    return load_for_decoding(toy.model_dir, device="cpu")


def one_type_dataset(toy, tokenizer, tmp_path, n=16):
    """The first n examples as open questions (a single task type: one batch of n)."""
    rows = [{k: v for k, v in t.items() if k not in ("choices", "gold")} | {"task": "open_qa"}
            for t in toy.tasks[:n]]
    write_tasks(str(tmp_path / "tasks.jsonl"), rows)
    return TaskDataset(str(tmp_path / "tasks.jsonl"), str(toy.feats_dir / "feats.scp"), tokenizer, with_answer=False)


def run(model, tokenizer, dataset, **settings):
    rows = []
    stats = decode_dataset(model, tokenizer, dataset, DecodeConfig(**settings), rows.extend, progress=False)
    return {r["id"]: (r["hypothesis"], r["nfe"]) for r in rows}, stats


@pytest.mark.parametrize("mode", [
    dict(gen_length=8, block_length=4, steps=8),                       # LLaDA quota, 2 blocks
    dict(gen_length=8, block_length=8, steps=8, factor=1.0),           # Fast-dLLM factor
    dict(gen_length=8, block_length=8, steps=8, threshold=0.5, cfg_scale=1.0),  # threshold + CFG
])
def test_batch_of_16_equals_one_at_a_time(loaded, toy, tmp_path, mode):
    model, tokenizer = loaded
    dataset = one_type_dataset(toy, tokenizer, tmp_path)
    lengths = {len(dataset[i].input_ids) for i in range(16)}
    assert len(lengths) > 3  # the prompts really are left-padded to different widths
    batched, stats = run(model, tokenizer, dataset, batch_size=16, **mode)
    single, _ = run(model, tokenizer, dataset, batch_size=1, **mode)
    assert len(batched) == 16 and stats.decoded == 16
    assert batched == single
    assert len({h for h, _ in batched.values()}) > 1  # not a degenerate constant answer


def test_copies_equal_repeated_rows(loaded, toy, tmp_path):
    """copies=k decodes like a batch holding each row k times (copy-major), audio encoded once."""
    from diffa.data.collate import collate_prompts

    model, tokenizer = loaded
    dataset = one_type_dataset(toy, tokenizer, tmp_path, n=3)
    examples = [dataset[i] for i in range(3)]
    sampling = DecodeConfig(gen_length=6, block_length=6, steps=6, temperature=1.0).sampling("open_qa")
    texts, nfe = decoder.decode_batch(model, tokenizer, collate_prompts(examples, tokenizer.pad_id), sampling,
                                      generator=torch.Generator().manual_seed(0), copies=2)
    repeated, repeated_nfe = decoder.decode_batch(model, tokenizer, collate_prompts(examples * 2, tokenizer.pad_id),
                                                  sampling, generator=torch.Generator().manual_seed(0))
    assert (texts, nfe) == (repeated, repeated_nfe) and len(texts) == 6
    assert texts[:3] != texts[3:]  # at temperature 1 the copies differ


def test_resumed_batches_draw_the_same_noise(loaded, toy, tmp_path):
    """Skipping a finished batch leaves the other batches, and their random seeds, unchanged."""
    model, tokenizer = loaded
    dataset = one_type_dataset(toy, tokenizer, tmp_path, n=6)
    config = DecodeConfig(batch_size=2, gen_length=4, block_length=4, steps=4, temperature=1.0, seed=3)
    batches = []
    decode_dataset(model, tokenizer, dataset, config, batches.append, progress=False)
    assert [len(b) for b in batches] == [2, 2, 2]
    done = [row["id"] for row in batches[1]]
    rows = []
    decode_dataset(model, tokenizer, dataset, config, rows.extend, done=done, progress=False)
    assert rows and [(r["id"], r["hypothesis"], r["nfe"]) for r in rows] == [
        (r["id"], r["hypothesis"], r["nfe"]) for r in batches[0] + batches[2]]


def test_unreadable_features_become_failed_rows(loaded, toy, tmp_path):
    model, tokenizer = loaded
    dataset = one_type_dataset(toy, tokenizer, tmp_path, n=4)
    broken = dataset.rows[1]["utt"]
    dataset.feats = {u: dataset.feats[u] for u in dataset.feats if u != broken}  # ark entry vanished
    rows = []
    stats = decode_dataset(model, tokenizer, dataset, DecodeConfig(batch_size=4, gen_length=4, block_length=4,
                           steps=4), rows.extend, progress=False)
    failed = [r for r in rows if r.get("failed")]
    assert [r["utt"] for r in failed] == [broken] and "unreadable features" in failed[0]["error"]
    assert (stats.decoded, stats.failed) == (3, 1)


def test_out_of_memory_halves_the_batch(loaded, toy, tmp_path, monkeypatch):
    model, tokenizer = loaded
    dataset = one_type_dataset(toy, tokenizer, tmp_path, n=5)
    settings = dict(gen_length=4, block_length=4, steps=4)
    expected, _ = run(model, tokenizer, dataset, batch_size=5, **settings)
    real = decoder.decode_batch
    longest = max(len(dataset[i].feats) for i in range(5))
    sizes = []

    def limited(model, tokenizer, batch, *args):
        sizes.append(len(batch["feat_lens"]))
        if len(batch["feat_lens"]) > 2 or int(batch["feat_lens"].max()) == longest:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(model, tokenizer, batch, *args)

    monkeypatch.setattr(decoder, "decode_batch", limited)
    rows = []
    decode_dataset(model, tokenizer, dataset, DecodeConfig(batch_size=5, **settings), rows.extend, progress=False)
    got = {r["id"]: (r["hypothesis"], r["nfe"]) for r in rows if not r.get("failed")}
    assert got == {k: v for k, v in expected.items() if k in got}
    too_big = [r for r in rows if r.get("failed")]
    assert [r["error"] for r in too_big] == ["out of memory"] and len(got) == 4
    assert sizes[0] == 5 and max(sizes[1:]) == 3 and sizes.count(1) >= 2  # halves, down to single rows


def test_answer_text_stops_at_eos_or_eot(toy):
    tok = toy.tokenizer
    hello = tok.encode("the cat")
    assert answer_text(tok, hello + [tok.eot_id] + tok.encode("sat") + [tok.eos_id]) == "the cat"
    assert answer_text(tok, hello + [tok.eos_id, tok.eos_id]) == "the cat"
    assert answer_text(tok, [tok.vocab_size + 5] + hello) == "the cat"  # ids past the tokenizer
