"""Tests for diffa.text.tokenizer: LLaDA fast tokenizer, SentencePiece, loading and training."""
import pytest
import sentencepiece as spm
import torch
from tokenizers import Tokenizer

from diffa.text.tokenizer import (
    SPECIAL_TOKENS,
    LLaDATokenizer,
    SentencePieceTokenizer,
    load_tokenizer,
    train_sentencepiece,
)

TEXT = ("<|startoftext|>Hello ünïcode 中文\n\n  two  spaces<|eot_id|><|mdm_mask|> end"
        "<|endoftext|>")


def test_llada_special_ids_come_from_tokenizer_json(llada_dir):
    raw = Tokenizer.from_file(str(llada_dir / "tokenizer.json"))
    tok = LLaDATokenizer(llada_dir)
    for name, token in SPECIAL_TOKENS.items():
        assert getattr(tok, f"{name}_id") == raw.token_to_id(token)
    assert tok.pad_id == tok.eos_id
    assert tok.vocab_size == raw.get_vocab_size(with_added_tokens=True)


def test_llada_encode_adds_no_bos_and_recognises_specials(llada_dir):
    tok = LLaDATokenizer(llada_dir)
    raw = Tokenizer.from_file(str(llada_dir / "tokenizer.json"))
    assert raw.encode("hello").ids[0] == tok.bos_id  # the post-processor would add BOS
    assert tok.bos_id not in tok.encode("hello")
    ids = tok.encode("a<|eot_id|>b<|start_header_id|>")
    assert ids.count(tok.eot_id) == 1 and ids[-1] == tok.start_header_id


def test_specials_are_single_ids_and_round_trip(tok):
    ids = tok.encode(TEXT)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert tok.mask_id in ids and tok.eot_id in ids
    assert tok.decode(ids, skip_special_tokens=False) == TEXT
    assert tok.decode(torch.tensor(ids), skip_special_tokens=False) == TEXT


def test_decode_skips_specials(tok):
    ids = tok.encode("<|startoftext|>the cat<|eot_id|><|endoftext|><|endoftext|>")
    assert tok.decode(ids) == "the cat"


def test_special_ids_are_distinct(tok):
    ids = [tok.bos_id, tok.eos_id, tok.mask_id, tok.start_header_id, tok.end_header_id,
           tok.eot_id]
    assert len(set(ids)) == 6
    assert all(0 <= i < tok.vocab_size for i in ids)


def test_llada_missing_special_token_names_dir_and_token(tmp_path, build_llada_dir):
    specials = [t for t in SPECIAL_TOKENS.values() if t != "<|mdm_mask|>"]
    path = build_llada_dir(tmp_path / "nomask", specials)
    with pytest.raises(ValueError, match=r"nomask.*<\|mdm_mask\|>"):
        LLaDATokenizer(path)


def test_llada_missing_tokenizer_json(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        LLaDATokenizer(tmp_path)



@pytest.mark.parametrize("name", ["tokenizer.json", "tokenizer_config.json"])
def test_llada_malformed_json_names_the_file(tmp_path, build_llada_dir, name):
    path = build_llada_dir(tmp_path / "cut")
    (path / name).write_text((path / name).read_text()[:40])
    with pytest.raises(ValueError, match=rf"cut/{name}: line \d+: not valid JSON .*copy the tokenizer again"):
        LLaDATokenizer(path)


def test_spm_layout_and_vocab(spm_dir):
    tok = SentencePieceTokenizer(spm_dir / "spm.model")
    assert [tok.bos_id, tok.eos_id, tok.mask_id, tok.start_header_id, tok.end_header_id,
            tok.eot_id] == [1, 2, 3, 4, 5, 6]
    assert 263 < tok.vocab_size <= 320


def test_spm_unreadable_model_names_the_file(tmp_path, spm_dir):
    cut = tmp_path / "spm.model"
    cut.write_bytes((spm_dir / "spm.model").read_bytes()[:100])
    with pytest.raises(ValueError, match=rf"^{cut}: not a readable tokenizer .*copy the tokenizer again"):
        SentencePieceTokenizer(cut)


def test_spm_training_is_deterministic_and_atomic(tmp_path, corpus):
    a = train_sentencepiece(corpus, tmp_path / "a" / "spm.model", vocab_size=300)
    b = train_sentencepiece(corpus, tmp_path / "b" / "spm.model", vocab_size=300)
    assert a.read_bytes() == b.read_bytes()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["spm.model"]


def test_spm_bpe_from_text_file(tmp_path, corpus):
    text_file = tmp_path / "corpus.txt"
    text_file.write_text("\n".join(corpus) + "\n")
    tok = SentencePieceTokenizer(train_sentencepiece(text_file, tmp_path / "spm.model", 300, "bpe"))
    assert tok.decode(tok.encode(TEXT), skip_special_tokens=False) == TEXT


def test_spm_training_errors(tmp_path, corpus):
    with pytest.raises(ValueError, match="model_type"):
        train_sentencepiece(corpus, tmp_path / "spm.model", 300, model_type="word")
    with pytest.raises(ValueError, match=r"spm\.model.*Vocabulary size"):
        train_sentencepiece(corpus, tmp_path / "spm.model", vocab_size=100)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        train_sentencepiece(tmp_path / "missing.txt", tmp_path / "spm.model", 300)
    assert not (tmp_path / "spm.model").exists()


def test_spm_without_special_symbols_is_rejected(tmp_path, corpus):
    prefix = tmp_path / "plain"
    spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus), model_prefix=str(prefix),
                                   vocab_size=60, minloglevel=2, hard_vocab_limit=False)
    with pytest.raises(ValueError, match=r"plain\.model.*<\|startoftext\|>"):
        SentencePieceTokenizer(f"{prefix}.model")


def test_load_tokenizer_picks_by_files(llada_dir, spm_dir, tmp_path):
    assert isinstance(load_tokenizer(llada_dir), LLaDATokenizer)
    assert isinstance(load_tokenizer(spm_dir), SentencePieceTokenizer)
    with pytest.raises(FileNotFoundError, match=r"tokenizer\.json.*spm\.model"):
        load_tokenizer(tmp_path)

