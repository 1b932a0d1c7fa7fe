"""Tests of diffa.train.model_init: the starting model and its checks against the config."""

import pytest

from diffa.model.diffa import DIFFA, tiny_config
from diffa.nnet.lora import LoRAConfig
from diffa.train.hparams import REQUIRED, SCHEMA
from diffa.train.model_init import init_model


def _config(**keys):
    return {**{k: v for k, v in SCHEMA.items() if v is not REQUIRED}, "stage": "sft", "tokenizer_dir": "tok", **keys}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """``saved(lora) -> directory`` of a tiny DIFFA model carrying ``lora`` (None: no LoRA)."""
    root = tmp_path_factory.mktemp("models")

    def save(lora):
        path = root / ("lora" if lora else "plain")
        if not path.exists():
            model = DIFFA(tiny_config())
            if lora:
                model.add_lora(lora)
            model.save_pretrained(path)
        return str(path)

    return save


def test_a_lora_section_that_differs_from_the_models_lora_is_an_error(saved):
    path = saved(LoRAConfig(r=2, alpha=4))
    with pytest.raises(ValueError, match=f"--init_from {path} does not match the config: lora.r: 8 in the config, 2 in {path}; "
                                         f"lora.alpha: 16 in the config, 4 in {path}$"):
        init_model(_config(init_from=path))


def test_model_and_lora_differences_are_reported_together(saved):
    path = saved(LoRAConfig(r=2, alpha=4))
    lora = {**SCHEMA["lora"], "r": 2, "alpha": 4, "dropout": 0.1}
    with pytest.raises(ValueError, match=f"model.n_queries: 8 in the config, 4 in {path}; lora.dropout: 0.1 in the config, 0.05 in"):
        init_model(_config(init_from=path, model={"n_queries": 8}, lora=lora))


def test_the_models_own_lora_is_kept_when_the_config_matches_it(saved):
    path = saved(LoRAConfig(r=2, alpha=4))
    model, summary = init_model(_config(init_from=path, lora={**SCHEMA["lora"], "r": 2, "alpha": 4}))
    assert model.config.lora["r"] == 2 and summary.counts["lora"] > 0


def test_a_model_without_lora_gets_the_configs(saved):
    model, summary = init_model(_config(init_from=saved(None), lora={**SCHEMA["lora"], "r": 4}))
    assert model.config.lora == {**SCHEMA["lora"], "r": 4} and summary.counts["lora"] > 0
    model, _ = init_model(_config(init_from=saved(None), stage="acoustic"))
    assert model.config.lora is None


def test_a_malformed_whisper_config_is_named(tmp_path):
    for name in ("whisper", "llada"):
        (tmp_path / name).mkdir()
    (tmp_path / "whisper" / "config.json").write_text('{"d_model": ')
    config = _config(stage="semantic", init={"whisper_dir": str(tmp_path / "whisper"), "llada_dir": str(tmp_path / "llada")})
    with pytest.raises(ValueError, match=r"whisper/config.json: line 1: not valid JSON .*download the checkpoint again"):
        init_model(config)
