"""diffa.data.pairs: pairs.jsonl schema and validation, PairDataset, collate_pairs."""

import json

import kaldiio
import numpy as np
import pytest
import torch

from diffa.data.collate import collate_train
from diffa.data.dataset import Example
from diffa.data.pairs import PairDataset, PairExample, collate_pairs, read_pairs, validate_pair, write_pairs
from diffa.text.template import encode_example
from diffa.text.tokenizer import SentencePieceTokenizer, train_sentencepiece

ROW = {"id": "u1-mcq-0-swap", "utt": "u1", "prompt": "Who speaks?", "chosen": "a man", "rejected": "a woman",
       "source": "swap:gender", "labels": {"gender": "male"}}


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    path = tmp_path_factory.mktemp("spm") / "spm.model"
    corpus = ["who speaks a man a woman", "what is said hello world", "the cat sat"] * 4
    return SentencePieceTokenizer(train_sentencepiece(corpus, path, vocab_size=80, byte_fallback=False))


def _write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def test_round_trip_sorts_and_keeps_schema_order(tmp_path):
    other = dict(ROW, id="a-open_qa-0-sampled", source="sampled")
    del other["labels"]
    write_pairs(str(tmp_path / "pairs.jsonl"), [ROW, other])
    rows = read_pairs(str(tmp_path / "pairs.jsonl"))
    assert [r["id"] for r in rows] == ["a-open_qa-0-sampled", "u1-mcq-0-swap"]
    assert rows[1] == ROW
    first_line = (tmp_path / "pairs.jsonl").read_text().splitlines()[1]
    assert list(json.loads(first_line)) == ["id", "utt", "prompt", "chosen", "rejected", "source", "labels"]


@pytest.mark.parametrize("change, message", [
    ({"rejected": "a man"}, "'rejected' equals 'chosen'"),
    ({"source": "swap"}, "'source' must be 'swap:<label>', 'sampled' or 'external'"),
    ({"source": "rule"}, "'source' must be"),
    ({"utt": "u 1"}, "'utt' must not contain whitespace"),
    ({"prompt": " "}, "'prompt' must be a non-empty string"),
    ({"labels": {"gender": 1}}, "'labels' must be an object of string -> string"),
    ({"answer": "x"}, "unknown key(s) ['answer']"),
])
def test_bad_rows_name_file_and_line(tmp_path, change, message):
    bad = {**ROW, **change}
    path = _write_lines(tmp_path / "pairs.jsonl", [json.dumps(dict(ROW, id="a")), json.dumps(bad)])
    with pytest.raises(ValueError) as err:
        read_pairs(path)
    assert str(err.value).startswith(f"{path}:2: ")
    assert message in str(err.value)


def test_missing_keys_malformed_json_and_order(tmp_path):
    row = {k: v for k, v in ROW.items() if k != "chosen"}
    with pytest.raises(ValueError, match=r"pairs.jsonl:1: missing required key\(s\) \['chosen'\]"):
        read_pairs(_write_lines(tmp_path / "pairs.jsonl", [json.dumps(row)]))
    with pytest.raises(ValueError, match=r"pairs.jsonl:1: malformed JSON"):
        read_pairs(_write_lines(tmp_path / "pairs.jsonl", ['{"id": "a",']))
    with pytest.raises(ValueError, match=r"pairs.jsonl:2: key 'a' comes after 'b'"):
        read_pairs(_write_lines(tmp_path / "pairs.jsonl", [json.dumps(dict(ROW, id="b")), json.dumps(dict(ROW, id="a"))]))
    with pytest.raises(ValueError, match=r"pairs.jsonl:1: expected a JSON object, got list"):
        read_pairs(_write_lines(tmp_path / "pairs.jsonl", ["[1, 2]"]))
    validate_pair(ROW, "here")  # the reference row is valid


def _dataset_dir(tmp_path, rows, utts=("u1", "u2")):
    feats = {utt: np.full((10 + 5 * i, 8), i, dtype=np.float32) for i, utt in enumerate(utts)}
    kaldiio.save_ark(str(tmp_path / "f.ark"), feats, scp=str(tmp_path / "feats.scp"))
    write_pairs(str(tmp_path / "pairs.jsonl"), rows)
    return str(tmp_path / "pairs.jsonl"), str(tmp_path / "feats.scp")


def test_dataset_encodes_like_the_sft_template(tmp_path, tok):
    rows = [ROW, dict(ROW, id="u2-asr-0-swap", utt="u2", prompt="what is said", chosen="hello world",
                      rejected="hello cat", source="swap:transcript")]
    ds = PairDataset(*_dataset_dir(tmp_path, rows), tok)
    ex = ds[1]
    assert ex.id == "u2-asr-0-swap" and ex.feats.shape == (15, 8)
    full = encode_example(tok, "what is said", "hello world")
    assert ex.prompt_ids.tolist() == full.input_ids[:full.prompt_len]
    assert ex.chosen_ids.tolist() == full.input_ids[full.prompt_len:]
    assert ex.rejected_ids.tolist() == tok.encode("hello cat") + [tok.eot_id]
    assert ex.audio_pos == full.audio_pos
    assert ds.num_tokens()[1] == full.prompt_len + max(len(ex.chosen_ids), len(ex.rejected_ids))
    assert ds.num_frames() == [10, 15]


def test_dataset_drops_pairs_without_features_and_truncates(tmp_path, tok, caplog):
    rows = [dict(ROW, chosen="a man a woman a man", rejected="a woman"), dict(ROW, id="v-0-swap", utt="v9")]
    pairs, feats = _dataset_dir(tmp_path, rows, utts=("u1",))
    ds = PairDataset(pairs, feats, tok, max_answer_tokens=3)
    assert len(ds) == 1 and "1 pairs left out" in caplog.text
    assert len(ds[0].chosen_ids) == 3 and ds[0].chosen_ids[-1] == tok.eot_id
    assert ds.truncated_answers == 2  # both sides of the pair: "a woman" is 3 tokens + eot
    assert len(ds[0].rejected_ids) == 3 and ds[0].rejected_ids[-1] == tok.eot_id
    (tmp_path / "none").mkdir()
    pairs, feats = _dataset_dir(tmp_path / "none", [dict(ROW, utt="v9")], utts=("u1",))
    with pytest.raises(ValueError, match="no pair has features in .*diffa.bin.make_pairs"):
        PairDataset(pairs, feats, tok)


def test_dataset_drops_pairs_whose_answers_the_cut_makes_identical(tmp_path, tok, caplog):
    rows = [ROW, dict(ROW, id="u1-open_qa-0-swap", chosen="a man a woman", rejected="a man a man")]
    pairs, feats = _dataset_dir(tmp_path, rows, utts=("u1",))
    assert len(PairDataset(pairs, feats, tok)) == 2
    ds = PairDataset(pairs, feats, tok, max_answer_tokens=3)  # both answers become "a man" + eot
    assert [r["id"] for r in ds.rows] == ["u1-mcq-0-swap"] and len(ds) == 1 and ds.identical_answers == 1
    assert ds[0].chosen_ids.tolist() != ds[0].rejected_ids.tolist()
    assert "1 pairs left out: chosen and rejected are the same tokens after the cut to max_answer_tokens=3; " \
           "raise max_answer_tokens (first: 'u1-open_qa-0-swap')" in caplog.text
    with pytest.raises(ValueError, match=r"no pair left: .* same tokens after the cut to max_answer_tokens=2; raise"):
        PairDataset(pairs, feats, tok, max_answer_tokens=2)


def test_collate_puts_chosen_first_and_shares_the_audio():
    def ex(name, frames, prompt, chosen, rejected):
        return PairExample(name, torch.ones(frames, 2), torch.tensor(prompt), torch.tensor(chosen), torch.tensor(rejected), 1, {})

    exs = [ex("p", 3, [1, 2, 3], [7, 9], [8, 8, 9]), ex("q", 5, [1, 2], [6, 9], [9])]
    b = collate_pairs(exs, pad_id=0)
    assert b["ids"] == ["p", "q"]
    assert b["feats"].shape == (2, 5, 2) and b["feat_lens"].tolist() == [3, 5]
    assert b["audio_index"].tolist() == [0, 1, 0, 1]
    assert b["input_ids"].tolist() == [[1, 2, 3, 7, 9, 0], [1, 2, 6, 9, 0, 0], [1, 2, 3, 8, 8, 9], [1, 2, 9, 0, 0, 0]]
    assert b["prompt_lens"].tolist() == [3, 2, 3, 2]
    # each side is an SFT batch of its own (the authors collate them apart): every position after
    # the prompt up to the side's longest sequence (eos padding included) is answer
    assert b["widths"].tolist() == [5, 5, 6, 6]
    chosen = collate_train([Example("p", torch.ones(3, 2), torch.tensor([1, 2, 3, 7, 9]), 3, 1, {}),
                            Example("q", torch.ones(5, 2), torch.tensor([1, 2, 6, 9]), 2, 1, {})], pad_id=0)
    rejected = collate_train([Example("p", torch.ones(3, 2), torch.tensor([1, 2, 3, 8, 8, 9]), 3, 1, {}),
                              Example("q", torch.ones(5, 2), torch.tensor([1, 2, 9]), 2, 1, {})], pad_id=0)
    assert torch.equal(b["answer_mask"][:2, :5], chosen["answer_mask"]) and not b["answer_mask"][:2, 5:].any()
    assert torch.equal(b["answer_mask"][2:], rejected["answer_mask"])
    assert b["audio_pos"].tolist() == [1, 1, 1, 1]
