"""torchrun worker of test_distributed.py: the real entry point, recording what each rank trains on.

Usage: torchrun --nproc_per_node 2 tests/train/ddp_worker.py OUT_DIR CONFIG [diffa.bin.train options]
Writes OUT_DIR/rank<k>.pt: the example keys of every batch of rank k, and the (DDP-averaged)
gradients of the trainable parameters at the first optimizer step, before clipping.
"""

import os
import sys

import torch

from diffa.bin import train as cli
from diffa.train.sft import SFTBrain


def run(out_dir, argv):
    """Run ``diffa.bin.train`` with ``argv`` and save this rank's record under ``out_dir``."""
    batches, grads = [], {}
    fit_batch, optimizers_step = SFTBrain.fit_batch, SFTBrain.optimizers_step

    def recording_fit_batch(self, batch):
        batches.append(batch["keys"].tolist())
        return fit_batch(self, batch)

    def recording_optimizers_step(self):
        if not grads:
            grads.update({n: p.grad.clone() for n, p in self.model.named_parameters() if p.requires_grad})
        return optimizers_step(self)

    SFTBrain.fit_batch, SFTBrain.optimizers_step = recording_fit_batch, recording_optimizers_step
    rank = int(os.environ["RANK"])
    cli.main(argv)
    torch.save({"batches": batches, "grads": grads}, os.path.join(out_dir, f"rank{rank}.pt"))


if __name__ == "__main__":
    torch.set_num_threads(1)
    run(sys.argv[1], sys.argv[2:])
