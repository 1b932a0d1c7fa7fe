"""Two gloo processes under torchrun: disjoint shards, and DDP + global normalisation = the union
(the gradient, and the per-task losses of the training log)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from diffa.text.tokenizer import load_tokenizer
from diffa.train.data import Collate
from diffa.train.hparams import load_config
from diffa.train.keyed_noise import corrupt
from diffa.train.model_init import init_model
from diffa.train.plot import read_log
from diffa.train.sft import MaskedPredictor, SFTBrain, masked_sft_loss

WORKER = Path(__file__).with_name("ddp_worker.py")


def test_two_processes_see_disjoint_examples_and_average_to_the_union_gradient(write_config, toy, tmp_path):
    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "targets": ["q_proj", "v_proj", "up_proj"]}
    config = write_config(batching={"max_batch_size": 3, "num_buckets": 1}, lora=lora, loss_normalization="batch")
    out = tmp_path / "exp"
    dump = tmp_path / "two_tasks"  # the toy examples, every third one labelled an open question
    shutil.copytree(toy["dump"], dump)
    rows = [json.loads(line) for line in (dump / "tasks.jsonl").read_text().splitlines()]
    (dump / "tasks.jsonl").write_text("".join(json.dumps({**r, "task": "open_qa" if i % 3 == 0 else r["task"]}) + "\n"
                                              for i, r in enumerate(rows)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(WORKER),
           str(tmp_path), config, "--output_folder", str(out), "--train_data", str(dump)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]

    # Each rank trained on its own examples: 16 examples in 6 batches of <= 3, 3 per rank.
    seen = [sorted(k for batch in r["batches"] for k in batch) for r in ranks]
    assert len(ranks[0]["batches"]) == len(ranks[1]["batches"]) == 3
    assert not set(seen[0]) & set(seen[1]) and sorted(seen[0] + seen[1]) == list(range(16))
    assert "process 1 of 2 (gloo backend)" in done.stderr

    # DDP left both ranks with the same gradient ...
    for name, grad in ranks[0]["grads"].items():
        assert torch.equal(grad, ranks[1]["grads"][name]), name

    # ... the gradient of one process on the union of their first batches.
    cfg = load_config(config, {"output_folder": str(tmp_path / "single"), "train_data": str(dump)})
    torch.manual_seed(cfg["seed"])
    model, _ = init_model(cfg)
    tok = load_tokenizer(cfg["tokenizer_dir"])
    train, _ = SFTBrain.load_data(cfg, tok)
    keys = ranks[0]["batches"][0] + ranks[1]["batches"][0]
    assert len({len(train[k][1].input_ids) for k in keys}) == 1  # no text padding: the union is the two batches
    batch = Collate(tok.pad_id)([train[k] for k in keys])
    noisy, masked, t = corrupt(batch["input_ids"], batch["answer_mask"], batch["keys"], tok.mask_id, cfg["seed"], 1, cfg["t_eps"])
    logits = MaskedPredictor(model)(batch["feats"], batch["feat_lens"], noisy, batch["audio_pos"], masked)
    loss, row_sums, row_weights = masked_sft_loss(logits, batch["input_ids"], masked, t, batch["answer_mask"])
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert set(grads) == set(ranks[0]["grads"])
    for name, grad in grads.items():
        assert torch.allclose(ranks[0]["grads"][name], grad, rtol=1e-4, atol=1e-6), name

    # The first log line's per-task losses are those of the union (summed over the ranks).
    first = read_log(str(out / "train_log.txt"))["train"][0]
    assert first["step"] == 1
    for task in ("asr", "open_qa"):
        rows_of_task = torch.tensor([name == task for name in batch["tasks"]])
        assert rows_of_task.any()
        expected = (row_sums[rows_of_task].sum() / row_weights[rows_of_task].sum()).item()
        assert abs(first[f"loss_{task}"] - expected) <= 5e-4 * expected, (task, first, expected)
