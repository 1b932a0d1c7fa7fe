"""Shared fixtures of the training tests: a toy setup (tiny Whisper/LLaDA, tokenizer, 16 examples)."""

import pytest
import torch
import yaml

from diffa.train.toy import make_toy_setup


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest, and steadiest on a shared machine, on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def toy(tmp_path_factory):
    """16 one-word answers, one instruction (every example has the same number of tokens)."""
    return make_toy_setup(tmp_path_factory.mktemp("toy"), n_examples=16, answer_words=(1, 1), instructions=("What is said?",))


@pytest.fixture
def write_config(tmp_path, toy):
    """``write_config(**keys) -> path`` of a stage config on the toy setup."""

    def write(**keys):
        config = {
            "stage": "sft",
            "seed": 7,
            "init": {"whisper_dir": toy["whisper_dir"], "llada_dir": toy["llada_dir"]},
            "tokenizer_dir": toy["tokenizer_dir"],
            "model": toy["model"],
            "batching": {"max_batch_size": 4, "num_buckets": 1},
            "number_of_epochs": 1,
            "lr": 1.0e-2,
            "log_interval": 1,
            **keys,
        }
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        return str(path)

    return write
