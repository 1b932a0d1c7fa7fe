"""Tiny official-format Whisper and LLaDA directories for the model tests."""

import pytest
import torch
from transformers import WhisperConfig, WhisperForConditionalGeneration

from diffa.model.diffa import tiny_config
from diffa.nnet.llada import LLaDAConfig, LLaDAModel


@pytest.fixture(scope="session")
def official_dirs(tmp_path_factory):
    """(whisper_dir, llada_dir) holding random tiny models saved in the official layouts."""
    root = tmp_path_factory.mktemp("official")
    cfg = tiny_config()
    torch.manual_seed(0)
    WhisperForConditionalGeneration(WhisperConfig(**cfg.encoder)).save_pretrained(root / "whisper")
    llm = LLaDAModel(LLaDAConfig.from_dict(cfg.llm))
    llm.init_weights(generator=torch.Generator().manual_seed(1))
    llm.save_pretrained(root / "llada")
    return root / "whisper", root / "llada"
