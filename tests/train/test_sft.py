"""Tests of diffa.train.sft: the masked-only loss, the predictor, batching costs, the Brain's steps."""

import json
import shutil

import kaldiio
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from diffa.bin.train import main
from diffa.diffusion.loss import sft_loss
from diffa.model.config import DIFFAConfig
from diffa.model.diffa import DIFFA, tiny_config
from diffa.text.tokenizer import load_tokenizer
from diffa.train.checkpoint import AtomicCheckpointer, average_trainable, latest_checkpoints
from diffa.train.data import Collate, TrainingSet, open_split
from diffa.train.plot import read_log
from diffa.train.sft import MaskedPredictor, SFTBrain, llm_positions, masked_sft_loss


@pytest.mark.parametrize("normalization", ["batch", "row"])
def test_masked_only_loss_equals_the_full_loss(normalization):
    g = torch.Generator().manual_seed(0)
    full = torch.randn(5, 9, 11, generator=g, requires_grad=True)
    targets = torch.randint(0, 11, (5, 9), generator=g)
    answer = torch.arange(9)[None] >= torch.tensor([[2], [3], [8], [4], [5]])
    masked = answer & (torch.rand(5, 9, generator=g) < 0.6)
    t = torch.rand(5, generator=g) * 0.9 + 0.05
    expected = sft_loss(full, targets, masked, t, answer, normalization)
    got = masked_sft_loss(full[masked], targets, masked, t, answer, normalization).loss
    assert torch.allclose(got, expected)
    (g_full,) = torch.autograd.grad(expected, full)
    (g_masked,) = torch.autograd.grad(got, full)
    assert torch.allclose(g_full, g_masked)


@pytest.mark.parametrize("normalization", ["batch", "row"])
def test_row_shares_give_the_loss_of_any_group_of_rows(normalization):
    g = torch.Generator().manual_seed(1)
    full = torch.randn(6, 8, 13, generator=g)
    targets = torch.randint(0, 13, (6, 8), generator=g)
    answer = torch.arange(8)[None] >= torch.tensor([[1], [6], [3], [2], [7], [4]])
    masked = answer & (torch.rand(6, 8, generator=g) < 0.5)
    masked[:, -1] = True
    t = torch.rand(6, generator=g) * 0.9 + 0.05
    loss, sums, weights = masked_sft_loss(full[masked], targets, masked, t, answer, normalization)
    assert torch.allclose(loss, sums.sum() / weights.sum())
    assert not sums.requires_grad
    for group in ([0], [1, 4], [2, 3, 5]):
        alone = sft_loss(full[group], targets[group], masked[group], t[group], answer[group], normalization)
        assert torch.allclose(sums[group].sum() / weights[group].sum(), alone)


def test_nothing_masked_gives_zero_with_a_graph():
    logits = torch.zeros(0, 7, requires_grad=True)
    none = torch.zeros(2, 3, dtype=torch.bool)
    loss, sums, weights = masked_sft_loss(logits, torch.zeros(2, 3, dtype=torch.long), none, torch.ones(2), ~none)
    assert loss.item() == 0.0 and loss.requires_grad
    assert sums.tolist() == [0.0, 0.0] and weights.tolist() == [3.0, 3.0]
    with pytest.raises(ValueError, match="logits has 0 rows but masked marks 6 positions"):
        masked_sft_loss(logits, torch.zeros(2, 3, dtype=torch.long), ~none, torch.ones(2), ~none)


def test_predictor_gives_the_model_logits_at_the_selected_positions():
    torch.manual_seed(0)
    model = DIFFA(tiny_config()).eval()
    feats, lens = torch.randn(3, 50, 16), torch.tensor([50, 31, 12])
    ids, pos = torch.randint(0, 90, (3, 8)), torch.tensor([1, 2, 1])
    select = torch.rand(3, 8) < 0.5
    with torch.no_grad():
        assert torch.allclose(MaskedPredictor(model)(feats, lens, ids, pos, select), model(feats, lens, ids, pos)[select], atol=1e-6)


@pytest.mark.parametrize("layout", ["stage1", "dual"])
def test_batching_cost_is_the_spliced_sequence_length(toy, tmp_path, layout):
    tok = load_tokenizer(toy["tokenizer_dir"])
    train = TrainingSet([open_split(toy["dump"], tok, str(tmp_path))])
    config = DIFFAConfig(encoder={}, llm={}, layout=layout, **toy["model"])
    model = DIFFA.from_components(config, toy["whisper_dir"], toy["llada_dir"])
    costs = llm_positions(train.num_tokens(), train.num_frames(), model.config)
    batch = Collate(tok.pad_id)([train[i] for i in range(len(train))])
    with torch.no_grad():
        _, audio_lens = model.encode_audio(batch["feats"], batch["feat_lens"])
    assert costs.tolist() == (audio_lens + torch.tensor(train.num_tokens())).tolist()


def _run(config, tmp_path, *args):
    out = tmp_path / "exp"
    main([config, "--output_folder", str(out), *args])
    return out


def test_a_tiny_model_overfits_16_examples(write_config, tmp_path, toy):
    config = write_config(
        batching={"max_batch_size": 16, "num_buckets": 1}, number_of_epochs=100, warmup_steps=5,
        lora={"r": 8, "alpha": 16, "dropout": 0.0, "targets": ["q_proj", "k_proj", "v_proj", "ff_proj", "up_proj"]},
        keep_checkpoints=1, log_interval=10,
    )
    out = _run(config, tmp_path, "--train_data", toy["dump"])
    losses = [r["loss"] for r in read_log(str(out / "train_log.txt"))["train"]]
    assert losses[0] > 3.0 and max(losses[-3:]) < 0.05
    # The final model predicts every answer token with every answer token masked (t = 1).
    model = DIFFA.from_pretrained(out / "final").eval()
    tok = load_tokenizer(toy["tokenizer_dir"])
    train = TrainingSet([open_split(toy["dump"], tok, str(tmp_path))])
    batch = Collate(tok.pad_id)([train[i] for i in range(16)])
    answer = batch["answer_mask"]
    with torch.no_grad():
        logits = MaskedPredictor(model)(batch["feats"], batch["feat_lens"], batch["input_ids"].masked_fill(answer, tok.mask_id), batch["audio_pos"], answer)
    assert torch.nn.functional.cross_entropy(logits, batch["input_ids"][answer]).item() < 0.05
    assert (out / "loss.png").is_file() and (out / "config.yaml").is_file()


def test_the_log_breaks_the_loss_down_by_task(write_config, tmp_path, toy):
    """Training and validation lines carry loss_<task> when the data holds several task types."""
    dump = tmp_path / "two_tasks"
    shutil.copytree(toy["dump"], dump)
    rows = [json.loads(line) for line in (dump / "tasks.jsonl").read_text().splitlines()]
    for row in rows[1::2]:
        row["task"] = "open_qa"
    (dump / "tasks.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = write_config(batching={"max_batch_size": 16, "num_buckets": 1}, number_of_epochs=3, log_interval=1)
    out = _run(config, tmp_path, "--train_data", str(dump), "--valid_data", str(dump))
    log = read_log(str(out / "train_log.txt"))
    for kind in ("train", "valid"):
        for row in log[kind]:
            by_task = [row["loss_asr"], row["loss_open_qa"]]
            # one batch per step and per validation: the loss is the token-weighted mean of the two
            assert min(by_task) <= row["loss"] <= max(by_task) and min(by_task) < max(by_task)
    assert log["valid"][-1]["loss_open_qa"] < log["valid"][0]["loss_open_qa"]
    one_task = _run(config, tmp_path / "one", "--train_data", toy["dump"], "--valid_data", toy["dump"])
    assert not any(key.startswith("loss_") for row in read_log(str(one_task / "train_log.txt"))["valid"] for key in row)


def test_accumulation_steps_once_per_window_and_at_the_end_of_an_epoch(write_config, tmp_path, toy):
    config = write_config(grad_accumulation_factor=3, number_of_epochs=2, log_interval=1)
    out = _run(config, tmp_path, "--train_data", toy["dump"])  # 4 batches per epoch: windows of 3 + 1
    steps = [r["step"] for r in read_log(str(out / "train_log.txt"))["train"]]
    assert steps == [1, 2, 3, 4]


def _dump_with_nan(toy, tmp_path, bad):
    dump = tmp_path / "nan_train"
    shutil.copytree(toy["dump"], dump)
    feats = kaldiio.load_scp(str(dump / "feats.scp"))
    with kaldiio.WriteHelper(f"ark,scp:{dump}/feats.ark,{dump}/feats.scp") as w:
        for i, utt in enumerate(sorted(feats)):
            x = np.array(feats[utt])
            if i in bad:
                x[0, 0] = np.nan
            w(utt, x)
    return str(dump)


def test_a_nonfinite_loss_skips_its_step_and_is_counted(write_config, tmp_path, toy, capfd):
    dump = _dump_with_nan(toy, tmp_path, bad={0})
    config = write_config(batching={"max_batch_size": 4, "num_buckets": 1, "shuffle": False}, number_of_epochs=1)
    out = _run(config, tmp_path, "--train_data", dump)
    rows = read_log(str(out / "train_log.txt"))["train"]
    assert [r["step"] for r in rows] == [1, 2, 3]  # 4 batches, one skipped
    assert rows[-1]["nonfinite"] == 1 and rows[-1]["skipped"] == 1
    err = capfd.readouterr().err
    assert "non-finite loss at epoch 1, batch 1 (examples utt000-asr" in err and "optimizer step skipped" in err
    for name, value in torch.load(next((out / "save").glob("CKPT+*")) / "optimizer.ckpt", weights_only=False)["state"].items():
        assert torch.isfinite(value["exp_avg"]).all(), name


def test_too_many_nonfinite_losses_in_a_row_abort(write_config, tmp_path, toy):
    dump = _dump_with_nan(toy, tmp_path, bad=set(range(16)))
    config = write_config(nonfinite_patience=2, batching={"max_batch_size": 4, "num_buckets": 1, "shuffle": False})
    with pytest.raises(RuntimeError, match="3 non-finite losses in a row, the last at epoch 1, batch 3"):
        _run(config, tmp_path, "--train_data", dump)


def _checkpoints(out):
    """``(optimizer_step, end-of-epoch)`` of every checkpoint under ``out/save``, oldest first."""
    return [(c.meta["optimizer_step"], c.meta["end-of-epoch"]) for c in reversed(latest_checkpoints(AtomicCheckpointer(out / "save")))]


def test_a_stop_right_after_a_periodic_save_does_not_save_that_step_again(write_config, tmp_path, toy):
    config = write_config(ckpt_interval_steps=1, keep_checkpoints=3, avg=2)
    out = _run(config, tmp_path, "--train_data", toy["dump"], "--optimizer_step_limit", "2")
    assert _checkpoints(out) == [(1, False), (2, False)]
    _run(config, tmp_path, "--train_data", toy["dump"], "--optimizer_step_limit", "2")  # resumed: nothing left to do
    assert _checkpoints(out) == [(1, False), (2, False)]
    final = load_file(str(out / "final" / "adapters.safetensors"))
    average = average_trainable(latest_checkpoints(AtomicCheckpointer(out / "save")))
    for name in (n for n in average if not n.startswith("llm.")):  # --avg 2: steps 1 and 2, not step 2 twice
        assert torch.equal(final[name], average[name]), name


def test_an_epoch_end_without_a_new_step_replaces_the_periodic_checkpoint(write_config, tmp_path, toy, monkeypatch):
    objectives = SFTBrain.compute_objectives

    def nan_on_the_last_batch(self, predictions, batch, stage):
        loss = objectives(self, predictions, batch, stage)
        return loss * float("nan") if self.step == self._epoch_len else loss

    monkeypatch.setattr(SFTBrain, "compute_objectives", nan_on_the_last_batch)
    config = write_config(ckpt_interval_steps=1, keep_checkpoints=3)
    out = _run(config, tmp_path, "--train_data", toy["dump"])  # 4 batches: steps 1-3, then a skipped step
    assert _checkpoints(out) == [(1, False), (2, False), (3, True)]
