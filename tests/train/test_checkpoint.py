"""Tests of diffa.train.checkpoint: atomic saves, trainable-only weights, compatibility, averaging."""

import re

import pytest
import torch
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks

from diffa.train.checkpoint import (
    AtomicCheckpointer,
    TrainableWeights,
    average_trainable,
    config_diff,
    latest_checkpoints,
    read_record,
)


@register_checkpoint_hooks
class _Crashing:
    """A recoverable whose save dies half-way (as a killed process would)."""

    @mark_as_saver
    def save(self, path):
        with open(path, "w") as f:
            f.write("half")
        raise KeyboardInterrupt

    @mark_as_loader
    def load(self, path, end_of_epoch):
        raise AssertionError("never loaded")


def _net():
    net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3))
    net[1].requires_grad_(False)
    return net


def test_only_trainable_parameters_are_saved_with_the_record(tmp_path):
    net = _net()
    ckpt = AtomicCheckpointer(tmp_path, {"model": TrainableWeights(net, {"stage": "sft", "model": {"d": 3}})})
    saved = ckpt.save_checkpoint()
    from safetensors.torch import load_file

    assert sorted(load_file(str(saved.paramfiles["model"]))) == ["0.bias", "0.weight"]
    assert read_record(saved.paramfiles["model"]) == {"stage": "sft", "model": {"d": 3}}
    other = _net()
    AtomicCheckpointer(tmp_path, {"model": TrainableWeights(other, {"stage": "sft", "model": {"d": 3}})}).recover_if_possible()
    assert torch.equal(other[0].weight, net[0].weight)


def test_an_interrupted_save_is_never_taken_for_a_checkpoint(tmp_path):
    net = _net()
    ckpt = AtomicCheckpointer(tmp_path, {"model": TrainableWeights(net, {}), "crash": _Crashing()})
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint()
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".tmp-CKPT+")
    assert ckpt.list_checkpoints() == [] and ckpt.recover_if_possible() is None
    AtomicCheckpointer(tmp_path, {"model": TrainableWeights(net, {})})
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_of_another_configuration_names_the_differing_fields(tmp_path):
    net = _net()
    record = {"stage": "sft", "model": {"lora": {"r": 8}, "taps": [1, 2]}, "data": {"seed": 1}}
    AtomicCheckpointer(tmp_path, {"model": TrainableWeights(net, record)}).save_checkpoint()
    changed = {"stage": "sft", "model": {"lora": {"r": 4}, "taps": [1, 2]}, "data": {"seed": 2}}
    ckpt = AtomicCheckpointer(tmp_path, {"model": TrainableWeights(_net(), changed)})
    with pytest.raises(ValueError) as err:
        ckpt.recover_if_possible()
    message = str(err.value)
    assert "data.seed: 1 in the checkpoint, 2 now" in message
    assert "model.lora.r: 8 in the checkpoint, 4 now" in message
    assert "taps" not in message and "--output_folder" in message


def test_mismatched_weights_are_refused():
    weights = TrainableWeights(_net(), {})
    with pytest.raises(ValueError, match="missing \\['0.bias'\\]"):
        weights.load_state_dict({"0.weight": torch.zeros(3, 3)}, where="x")
    with pytest.raises(ValueError, match="x: 0.weight has shape \\(2, 3\\), the model's is \\(3, 3\\)"):
        weights.load_state_dict({"0.weight": torch.zeros(2, 3), "0.bias": torch.zeros(3)}, where="x")


def test_average_of_the_newest_checkpoints(tmp_path):
    net = torch.nn.Linear(2, 1, bias=False)
    ckpt = AtomicCheckpointer(tmp_path, {"model": TrainableWeights(net, {})})
    for value in (1.0, 2.0, 4.0, 9.0):
        net.weight.data.fill_(value)
        ckpt.save_and_keep_only(num_to_keep=3)
    newest = latest_checkpoints(ckpt, 2)
    assert len(ckpt.list_checkpoints()) == 3
    assert average_trainable(newest)["weight"].tolist() == [[6.5, 6.5]]
    assert average_trainable(latest_checkpoints(ckpt))["weight"].tolist() == [[5.0, 5.0]]
    with pytest.raises(ValueError, match="no checkpoint"):
        average_trainable([])


def test_an_unreadable_checkpoint_file_names_it_and_what_to_do(tmp_path):
    net = _net()
    ckpt = AtomicCheckpointer(tmp_path, {"model": TrainableWeights(net, {})})
    older, newest = ckpt.save_checkpoint(name="a"), ckpt.save_checkpoint(name="b")
    newest.paramfiles["model"].write_bytes(b"\x10\x00")  # e.g. a copy cut short
    expected = rf"{re.escape(str(newest.paramfiles['model']))}: not a readable safetensors file .*delete {re.escape(str(newest.path))} and run again"
    with pytest.raises(ValueError, match=expected):
        AtomicCheckpointer(tmp_path, {"model": TrainableWeights(_net(), {})}).recover_if_possible()
    with pytest.raises(ValueError, match=expected):
        average_trainable([older, newest])


def test_config_diff_ignores_software_versions():
    assert config_diff({"encoder": {"transformers_version": "4"}}, {"encoder": {"transformers_version": "5"}}) == []
