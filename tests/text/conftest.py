"""Tiny tokenizers for the text tests: an official-like LLaDA directory and a SentencePiece one."""
import json

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from diffa.text.tokenizer import SPECIAL_TOKENS, LLaDATokenizer, SentencePieceTokenizer
from diffa.text.tokenizer import train_sentencepiece

CORPUS = [
    "You are a helpful voice assistant.",
    "This is the audio: <audio>. What is the speaker saying?",
    "The speaker is a woman with a calm voice.",
    "Transcribe the audio. Answer with one word.",
    "a cat sat on the mat near the door",
]


def _build_llada_dir(path, specials=tuple(SPECIAL_TOKENS.values())):
    """Write a byte-level BPE tokenizer laid out like the official LLaDA directory.

    Like Llama-3's, its post-processor prepends BOS, so a tokenizer that did not pass
    ``add_special_tokens=False`` would show it.
    """
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(CORPUS, trainer)
    tk.add_special_tokens(list(specials))
    if SPECIAL_TOKENS["bos"] in specials:
        bos = SPECIAL_TOKENS["bos"]
        tk.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", special_tokens=[(bos, tk.token_to_id(bos))])
    path.mkdir(parents=True, exist_ok=True)
    tk.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": SPECIAL_TOKENS["bos"],
        "eos_token": SPECIAL_TOKENS["eos"],
        "clean_up_tokenization_spaces": False,
    }))
    # the model's config names a model type transformers does not know, with remote code
    (path / "config.json").write_text(json.dumps({
        "model_type": "llada", "auto_map": {"AutoConfig": "configuration_llada.LLaDAConfig"}}))
    return path


@pytest.fixture(scope="session")
def corpus():
    """A few training sentences."""
    return list(CORPUS)


@pytest.fixture(scope="session")
def build_llada_dir():
    """``build(path, specials=all six) -> path``: writes an official-like LLaDA tokenizer dir."""
    return _build_llada_dir


@pytest.fixture(scope="session")
def llada_dir(tmp_path_factory):
    return _build_llada_dir(tmp_path_factory.mktemp("llada"))


@pytest.fixture(scope="session")
def spm_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("spm")
    train_sentencepiece(CORPUS, path / "spm.model", vocab_size=320)
    return path


@pytest.fixture(params=["llada", "spm"])
def tok(request, llada_dir, spm_dir):
    if request.param == "llada":
        return LLaDATokenizer(llada_dir)
    return SentencePieceTokenizer(spm_dir / "spm.model")
