"""Masked-diffusion SFT of DIFFA as a SpeechBrain ``Brain`` (curriculum stages 1-3).

One training step: every example gets a time ``t`` and its answer tokens are masked
with probability ``t`` (keyed noise, :mod:`diffa.train.keyed_noise`); DIFFA encodes the audio,
runs the LLM over the noisy text and computes logits **only at the masked positions**
(:class:`MaskedPredictor`); the loss is ``sum CE / t`` normalised per batch (DIFFA) or per row
(LLaDA) (:func:`masked_sft_loss`).

What :class:`SFTBrain` adds to SpeechBrain's ``Brain``:

* data: length-bucketed dynamic batches, disjoint per rank, with replay mixing
  (:class:`~diffa.data.batching.BucketBatchSampler`);
* the loss is normalised by the answer tokens (or rows) of the *global* batch: each rank scales
  its loss by ``local * world_size / global`` before DDP averages the gradients, so N processes
  compute exactly the gradient of one process on the union of their batches;
* gradient accumulation whose last window of an epoch is stepped too, global-norm clipping over
  every trainable parameter, AdamW (no weight decay on 1-D parameters), warmup + cosine
  (:mod:`diffa.train.schedule`), autocast per ``precision``;
* a non-finite loss skips its optimizer step (on every rank) with a warning; more than
  ``nonfinite_patience`` in a row abort;
* checkpoints (:mod:`diffa.train.checkpoint`) every ``ckpt_interval_steps`` optimizer steps and
  at the end of every epoch, atomic, trainable weights only, at most one per optimizer step, the
  newest ``keep_checkpoints`` kept; resuming restores weights, optimizer, step (hence learning
  rate), epoch and position in the epoch; dropout is re-seeded from (seed, epoch, batch, rank)
  before every batch, so an interrupted run continues exactly;
* ``train_log.txt`` lines (loss, lr, grad norm, examples/s, ETA) every ``log_interval`` steps,
  with the loss of each task type (``loss_asr``, ``loss_mcq``, ...: :mod:`diffa.train.loss_by_task`)
  where the data holds several, in training and validation lines alike;
  ``loss.png`` and the model (``final/``, averaged over the newest ``avg`` checkpoints) at the end.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

import numpy as np
import speechbrain as sb
import torch
import torch.nn.functional as F
import yaml
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks
from speechbrain.utils.distributed import ddp_barrier, if_main_process
from speechbrain.utils.epoch_loop import EpochCounter

from diffa.data.batching import BucketBatchSampler
from diffa.model.config import DIFFAConfig
from diffa.model.diffa import DIFFA
from diffa.train.checkpoint import AtomicCheckpointer, TrainableWeights, average_trainable, latest_checkpoints
from diffa.train.data import Collate, TrainingSet, open_split
from diffa.train.keyed_noise import corrupt, hash_keys
from diffa.train.loss_by_task import LossByTask
from diffa.train.plot import append_log, plot_loss
from diffa.train.schedule import WarmupCosine

logger = logging.getLogger(__name__)

# Config keys that are SpeechBrain run options (Brain reads them from its hparams).
RUN_OPTION_KEYS = (
    "precision",
    "max_grad_norm",
    "grad_accumulation_factor",
    "nonfinite_patience",
    "ckpt_interval_steps",
    "ckpt_interval_minutes",
    "optimizer_step_limit",
)


class SFTLoss(NamedTuple):
    """:func:`masked_sft_loss`: the loss and each row's share of it.

    ``loss`` equals ``row_sums.sum() / row_weights.sum()`` (up to rounding), so the loss of any
    group of rows (a task type, :class:`~diffa.train.loss_by_task.LossByTask`) is the ratio of
    their sums: ``row_sums`` is a row's ``sum CE / t`` (``"row"``: divided by its answer length),
    ``row_weights`` its answer tokens (``"row"``: 1). Both are (B,), detached.
    """

    loss: torch.Tensor
    row_sums: torch.Tensor
    row_weights: torch.Tensor


def masked_sft_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    masked: torch.Tensor,
    t: torch.Tensor,
    answer_mask: torch.Tensor,
    normalization: str = "batch",
) -> SFTLoss:
    """:func:`diffa.diffusion.loss.sft_loss` for logits computed at the masked positions only.

    ``logits`` is (n_masked, V), the rows of ``masked.nonzero()`` in order; the full (B, L, V)
    logits are never built (V = 126,464 for LLaDA). Each masked position's cross-entropy is
    divided by its row's time (``"row"``: times the row's answer length), as in ``sft_loss``.

    Arguments
    ---------
    logits : torch.Tensor
        (n_masked, V).
    targets, masked, answer_mask : torch.Tensor
        (B, L) clean ids, masked positions, answer positions.
    t : torch.Tensor
        (B,) masking probabilities.
    normalization : str
        ``"batch"`` or ``"row"``.

    Returns
    -------
    SFTLoss
        The scalar loss (zero, still attached to ``logits``, when nothing is masked) and the
        rows' shares of it.

    Example
    -------
    >>> from diffa.diffusion.loss import sft_loss
    >>> full = torch.randn(2, 4, 7)
    >>> targets = torch.randint(0, 7, (2, 4))
    >>> answer = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]], dtype=torch.bool)
    >>> masked = torch.tensor([[0, 1, 0, 1], [0, 0, 1, 1]], dtype=torch.bool)
    >>> t = torch.tensor([0.5, 0.9])
    >>> all(torch.allclose(masked_sft_loss(full[masked], targets, masked, t, answer, n).loss,
    ...                    sft_loss(full, targets, masked, t, answer, n)) for n in ("batch", "row"))
    True
    >>> loss, sums, weights = masked_sft_loss(full[masked], targets, masked, t, answer)
    >>> torch.allclose(loss, sums.sum() / weights.sum()), weights.tolist()
    (True, [3.0, 2.0])
    >>> first_row = sft_loss(full[:1], targets[:1], masked[:1], t[:1], answer[:1])
    >>> torch.allclose(first_row, sums[0] / weights[0])
    True
    """
    rows = masked.nonzero(as_tuple=True)[0]
    n = rows.numel()
    if logits.shape[0] != n:
        raise ValueError(f"logits has {logits.shape[0]} rows but masked marks {n} positions")
    if normalization not in ("batch", "row"):
        raise ValueError(f"normalization must be 'batch' or 'row', got {normalization!r}")
    n_answer = answer_mask.sum(-1).to(torch.float32)
    if normalization == "batch":
        row_t, factor, row_weights = t[rows].float(), n / n_answer.sum(), n_answer
    else:
        row_t, factor, row_weights = t[rows].float() * n_answer[rows], n / masked.shape[0], torch.ones_like(n_answer)
    if n == 0:
        return SFTLoss(logits.sum() * 0.0, torch.zeros_like(n_answer), row_weights)
    weighted = F.cross_entropy(logits.float(), targets[masked], reduction="none") / row_t
    row_sums = torch.zeros_like(n_answer).index_add_(0, rows, weighted.detach())
    # sum / n * (n / normaliser): the order of operations of the earlier one-token-row formulation,
    # kept so that training runs round exactly as before
    return SFTLoss(weighted.sum() / n * factor, row_sums, row_weights)


class MaskedPredictor(torch.nn.Module):
    """DIFFA's logits at selected text positions (what the SFT loss needs), as one ``forward``.

    Wrapping the model this way gives DDP a single forward to hook.

    Arguments
    ---------
    model : DIFFA
        The model.

    Example
    -------
    >>> import torch
    >>> from diffa.model.diffa import DIFFA, tiny_config
    >>> model = DIFFA(tiny_config())
    >>> ids = torch.randint(0, 90, (2, 6))
    >>> masked = torch.tensor([[0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 1, 1]], dtype=torch.bool)
    >>> logits = MaskedPredictor(model)(torch.randn(2, 40, 16), torch.tensor([40, 20]), ids,
    ...                                 torch.tensor([1, 1]), masked)
    >>> logits.shape
    torch.Size([4, 100])
    """

    def __init__(self, model: DIFFA):
        super().__init__()
        self.model = model

    def forward(self, feats, feat_lens, input_ids, audio_pos, select) -> torch.Tensor:
        """Logits (n_selected, V) at the True positions of ``select`` (B, L_text), row-major."""
        audio, audio_lens = self.model.encode_audio(feats, feat_lens)
        hidden = self.model.text_hidden(audio, audio_lens, input_ids, audio_pos)
        return self.model.llm.lm_head(hidden[select])


def llm_positions(num_tokens: Sequence[int], num_frames: Sequence[int], config: DIFFAConfig) -> np.ndarray:
    """LLM sequence length of each example: text tokens + audio block (the batching cost).

    The audio block is the prefix (prompts or acoustic queries) plus one semantic token per four
    encoder frames; the encoder has ``(frames - 1) // 2 + 1`` frames (1500 with 30-s padding).

    Example
    -------
    >>> from diffa.model.diffa import tiny_config
    >>> llm_positions([10, 12], [40, 81], tiny_config()).tolist()   # 4 queries + 20 // 4, 41 // 4
    [19, 26]
    """
    frames = np.asarray(num_frames, dtype=np.int64)
    encoder = np.full_like(frames, 1500) if config.pad_to_30s else (frames - 1) // 2 + 1
    prefix = config.n_prompts if config.layout == "stage1" else config.n_queries
    return np.asarray(num_tokens, dtype=np.int64) + prefix + encoder // 4


def fixed_batches(dataset, config: DIFFAConfig, max_tokens: Optional[int], max_batch_size: Optional[int],
                  num_buckets: int) -> List[List[int]]:
    """Validation's batches of ``dataset`` (anything with ``num_tokens()`` and ``num_frames()``):
    bucketed by LLM length (:func:`llm_positions`), in one fixed order; ``diffa.bin.score_pairs``
    batches held-out pairs with it too, as their ELBOs depend on the batch's padding.

    Example
    -------
    >>> import types
    >>> from diffa.model.diffa import tiny_config
    >>> data = types.SimpleNamespace(num_tokens=lambda: [5, 9, 6, 9], num_frames=lambda: [16, 16, 16, 16])
    >>> sorted(sorted(b) for b in fixed_batches(data, tiny_config(), None, 2, 2))
    [[0, 2], [1, 3]]
    """
    lengths = llm_positions(dataset.num_tokens(), dataset.num_frames(), config)
    sampler = BucketBatchSampler(lengths, max_tokens=max_tokens, max_batch_size=max_batch_size,
                                 num_buckets=num_buckets, shuffle=False)
    return sampler.batches(0)


def _seed_of(*keys: int) -> int:
    """A non-negative 63-bit seed hashed from integer keys."""
    return int(hash_keys(*keys)) & (2**63 - 1)


def _format_eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


@register_checkpoint_hooks
class SFTBrain(sb.core.Brain):
    """Masked-diffusion SFT (see module docstring).

    Arguments
    ---------
    model : DIFFA
        Prepared for the stage (:func:`diffa.train.model_init.init_model`).
    config : dict
        Training config (:mod:`diffa.train.hparams`).
    tokenizer : object
        Its ``mask_id`` and ``pad_id`` are used.
    run_opts : dict, optional
        SpeechBrain run options (``device``, ``distributed_backend``, ``noprogressbar``...).

    Example
    -------
    >>> import tempfile, types
    >>> from diffa.model.diffa import DIFFA, tiny_config
    >>> from diffa.train.hparams import REQUIRED, SCHEMA
    >>> from diffa.train.stages import prepare_stage
    >>> model = DIFFA(tiny_config())
    >>> _ = prepare_stage(model, "acoustic")
    >>> config = {k: v for k, v in SCHEMA.items() if v is not REQUIRED}  # the defaults
    >>> config.update(stage="acoustic", tokenizer_dir="tok", output_folder=tempfile.mkdtemp())
    >>> brain = SFTBrain(model, config, types.SimpleNamespace(mask_id=99, pad_id=98), run_opts={"device": "cpu"})
    >>> batch = {"ids": ["a", "b"], "feats": torch.randn(2, 40, 16), "feat_lens": torch.tensor([40, 24]),
    ...          "input_ids": torch.randint(0, 90, (2, 9)), "audio_pos": torch.tensor([1, 1]),
    ...          "answer_mask": torch.arange(9).expand(2, 9) >= 5, "keys": torch.tensor([0, 1]), "tasks": ["asr", "mcq"]}
    >>> loss = brain.compute_objectives(brain.compute_forward(batch, sb.Stage.VALID), batch, sb.Stage.VALID)
    >>> loss.shape, bool(loss > 0)
    (torch.Size([]), True)
    """

    def __init__(self, model: DIFFA, config: Dict[str, Any], tokenizer, run_opts: Optional[dict] = None):
        self.model = model
        self.config = config
        self.mask_id, self.pad_id = tokenizer.mask_id, tokenizer.pad_id
        if model.llm.config.mask_token_id != self.mask_id:
            raise ValueError(
                f"tokenizer {config['tokenizer_dir']} has mask id {self.mask_id} but the LLM uses "
                f"{model.llm.config.mask_token_id}: use the LLM's own tokenizer"
            )
        self.out_dir = Path(config["output_folder"])
        self.log_path = str(self.out_dir / "train_log.txt")
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.rank = torch.distributed.get_rank() if distributed else 0
        self.world_size = torch.distributed.get_world_size() if distributed else 1
        predictor = MaskedPredictor(model)
        # DDP syncs only what trains: the frozen 8B base is loaded identically on every rank.
        torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
            predictor,
            [n for n, p in predictor.named_parameters() if not p.requires_grad] + [n for n, _ in predictor.named_buffers()],
        )
        hparams = {key: config[key] for key in RUN_OPTION_KEYS}
        hparams["output_folder"] = str(self.out_dir)
        super().__init__(
            modules={"predictor": predictor},
            hparams=hparams,
            run_opts=run_opts,
            checkpointer=AtomicCheckpointer(self.out_dir / "save"),
        )
        self.epoch_counter = EpochCounter(config["number_of_epochs"])
        self.checkpointer.add_recoverable("counter", self.epoch_counter)
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        self.nonfinite_in_a_row = 0
        self.nonfinite_total = 0
        self.skipped_steps = 0
        self.epoch = 0
        self._window_ok = True
        self._stepped = False
        self._grad_norm = float("nan")
        self.loss_by_task = {stage: LossByTask([]) for stage in (sb.Stage.TRAIN, sb.Stage.VALID)}

    # ------------------------------------------------------------------ data
    @classmethod
    def load_data(cls, config: Dict[str, Any], tokenizer):
        """``(train_set, valid_set or None)`` from ``train_data`` / ``valid_data`` (dump dirs)."""
        dirs = [d for d in str(config["train_data"] or "").split(",") if d.strip()]
        if not dirs:
            raise ValueError("no training data: pass --train_data dump/<set>[,dump/<set>...]")
        names = [os.path.basename(os.path.normpath(d)) for d in dirs]
        unknown = sorted(set(config["replay_sets"]) - set(names))
        if unknown:
            raise ValueError(f"replay_sets {unknown} are not among the training sets {names} (--train_data)")
        work_dir = os.path.join(config["output_folder"], "data")
        opts = {"system": config["system_prompt"], "max_answer_tokens": config["max_answer_tokens"]}
        splits = [open_split(d, tokenizer, work_dir, **opts) for d in dirs]
        for split in splits:
            logger.info("%s: %d examples (%d empty answers, %d without features left out)",
                        split.name, len(split), split.empty_answers, len(split.missing_feats))
        replay = [s for s in splits if s.name in config["replay_sets"]]
        train = TrainingSet([s for s in splits if s.name not in config["replay_sets"]], replay)
        valid = None
        if config["valid_data"]:
            valid = TrainingSet([open_split(config["valid_data"], tokenizer, os.path.join(work_dir, "valid"), **opts)])
        return train, valid

    def make_train_loader(self, train_set: TrainingSet) -> torch.utils.data.DataLoader:
        """Bucketed, sharded, replay-mixed training loader; sets ``self.train_sampler``."""
        lengths = llm_positions(train_set.num_tokens(), train_set.num_frames(), self.model.config)
        batching = self.config["batching"]
        self.train_sampler = BucketBatchSampler(
            lengths,
            max_tokens=batching["max_tokens"],
            max_batch_size=batching["max_batch_size"],
            num_buckets=batching["num_buckets"],
            shuffle=batching["shuffle"],
            seed=self.config["seed"],
            rank=self.rank,
            world_size=self.world_size,
            replay_from=train_set.replay_from,
            replay_ratio=self.config["replay_ratio"] if train_set.replay_from < len(train_set) else 0.0,
        )
        return self._loader(train_set, self.train_sampler)

    def make_valid_loader(self, valid_set: TrainingSet) -> torch.utils.data.DataLoader:
        """Every rank scores the whole validation set, in the same fixed batches every epoch."""
        batching = self.config["batching"]
        batches = fixed_batches(valid_set, self.model.config, batching["max_tokens"], batching["max_batch_size"],
                                batching["num_buckets"])
        return self._loader(valid_set, batches)

    def _loader(self, dataset, batch_sampler) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            dataset,
            batch_sampler=batch_sampler,
            collate_fn=Collate(self.pad_id),
            num_workers=self.config["num_workers"],
            pin_memory=self.device_type == "cuda",
        )

    # ------------------------------------------------------------------ forward / loss
    def compute_forward(self, batch, stage):
        """Corrupt the answers and predict the masked tokens (validation uses epoch 0's noise)."""
        batch = {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
        epoch = self.epoch if stage == sb.Stage.TRAIN else 0
        noisy, masked, t = corrupt(
            batch["input_ids"], batch["answer_mask"], batch["keys"], self.mask_id, self.config["seed"], epoch, self.config["t_eps"]
        )
        logits = self.modules.predictor(batch["feats"], batch["feat_lens"], noisy, batch["audio_pos"], masked)
        return {"logits": logits, "masked": masked, "t": t, "input_ids": batch["input_ids"], "answer_mask": batch["answer_mask"]}

    def compute_objectives(self, predictions, batch, stage):
        """This rank's masked-diffusion loss (:func:`masked_sft_loss`); its shares per task are tallied for the log."""
        p = predictions
        terms = masked_sft_loss(p["logits"], p["input_ids"], p["masked"], p["t"], p["answer_mask"], self.config["loss_normalization"])
        self.loss_by_task[sb.Stage.TRAIN if stage == sb.Stage.TRAIN else sb.Stage.VALID].add(batch["tasks"], terms.row_sums, terms.row_weights)
        return terms.loss

    def _global_scale(self, batch, loss: torch.Tensor):
        """``local * world / global`` normaliser and whether every rank's loss is finite."""
        local = batch["answer_mask"].sum() if self.config["loss_normalization"] == "batch" else batch["answer_mask"].shape[0]
        stats = torch.tensor([float(local), float(not torch.isfinite(loss))], device=self.device)
        if self.world_size > 1:
            torch.distributed.all_reduce(stats)
        return float(local) * self.world_size / stats[0].item(), stats[1].item() == 0

    # ------------------------------------------------------------------ one batch
    def fit_batch(self, batch):
        """Forward, backward (scaled for the global batch and the accumulation window), maybe step."""
        accum = self.grad_accumulation_factor
        window_start = (self.step - 1) // accum * accum
        window = min(accum, self._epoch_len - window_start)
        should_step = self.step == window_start + window
        torch.manual_seed(_seed_of(self.config["seed"], self.epoch, self.step, self.rank))  # dropout
        self._stepped = False
        with self.no_sync(not should_step):
            with self.training_ctx:
                outputs = self.compute_forward(batch, sb.Stage.TRAIN)
                loss = self.compute_objectives(outputs, batch, sb.Stage.TRAIN)
            scale, finite = self._global_scale(batch, loss)
            if finite:
                self.scaler.scale(loss * (scale / window)).backward()
                self.nonfinite_in_a_row = 0
            else:
                self._nonfinite_loss(batch)
        if should_step:
            if self._window_ok:
                self.optimizers_step()
            else:
                self.optimizer.zero_grad(set_to_none=True)
                self.skipped_steps += 1
            self._window_ok = True
        self.on_fit_batch_end(batch, outputs, loss, should_step)
        return loss.detach().cpu()

    def _nonfinite_loss(self, batch) -> None:
        self.nonfinite_in_a_row += 1
        self.nonfinite_total += 1
        self._window_ok = False
        where = f"epoch {self.epoch}, batch {self.step} (examples {', '.join(batch['ids'][:5])}...)"
        if self.nonfinite_in_a_row > self.nonfinite_patience:
            raise RuntimeError(
                f"{self.nonfinite_in_a_row} non-finite losses in a row, the last at {where}; stopping. Check the "
                "features of these examples for NaN/inf, or lower lr; nonfinite_patience sets how many are skipped"
            )
        logger.warning("non-finite loss at %s: optimizer step skipped (%d in a row, %d in all)", where, self.nonfinite_in_a_row, self.nonfinite_total)

    def optimizers_step(self):
        """Unscale, clip by global norm, set the scheduled lr, step AdamW."""
        self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.trainable, self.max_grad_norm)
        self._grad_norm = float(norm)
        if not math.isfinite(self._grad_norm) and not self.scaler.is_enabled():
            logger.warning("non-finite gradient norm at optimizer step %d: step skipped", self.optimizer_step + 1)
            self.optimizer.zero_grad(set_to_none=True)
            self.skipped_steps += 1
            return
        lr = self.schedule(self.optimizer_step + 1)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.optimizer_step += 1
        self._stepped = True

    def init_optimizers(self):
        """AdamW over the trainable parameters; no weight decay on vectors (biases, norms)."""
        decay = [p for p in self.trainable if p.dim() >= 2]
        no_decay = [p for p in self.trainable if p.dim() < 2]
        c = self.config
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": c["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
            lr=c["lr"], betas=tuple(c["betas"]), eps=c["adam_eps"],
        )
        self.optimizers_dict = {"optimizer": self.optimizer}
        self.checkpointer.add_recoverable("optimizer", self.optimizer)

    # ------------------------------------------------------------------ logging
    def on_stage_start(self, stage, epoch=None):
        """Position the sampler (resume: after the batches already done) and reset the stats."""
        if stage != sb.Stage.TRAIN:
            self.loss_by_task[sb.Stage.VALID].flush()
            return
        self.epoch = epoch
        self.train_sampler.load_state_dict({"epoch": epoch, "consumed": self.step})
        self._epoch_len = len(self.train_sampler)
        self._stats = torch.zeros(3, dtype=torch.float64)  # loss sum, finite batches, examples
        self.loss_by_task[sb.Stage.TRAIN].flush()
        self._last_log = time.time()

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """Accumulate statistics; write a log line every ``log_interval`` optimizer steps."""
        finite = bool(torch.isfinite(loss))
        self._stats += torch.tensor([float(loss.detach()) if finite else 0.0, float(finite), len(batch["ids"])], dtype=torch.float64)
        if self._stepped and self.optimizer_step % self.config["log_interval"] == 0:
            self._log_train()

    def _log_train(self) -> None:
        stats = self._stats.to(self.device)
        if self.world_size > 1:
            torch.distributed.all_reduce(stats)
        loss_sum, batches, examples = stats.tolist()
        now = time.time()
        done = self.optimizer_step - self._start_step
        eta = (self.total_steps - self.optimizer_step) * (now - self._start_time) / max(done, 1)
        fields = {
            "epoch": self.epoch,
            "step": self.optimizer_step,
            "loss": loss_sum / batches if batches else float("nan"),
            **self.loss_by_task[sb.Stage.TRAIN].flush(self.device, reduce=self.world_size > 1),
            "lr": self.optimizer.param_groups[0]["lr"],
            "grad_norm": self._grad_norm,
            "examples/s": examples / max(now - self._last_log, 1e-9),
            "eta": _format_eta(eta),
        }
        if self.nonfinite_total or self.skipped_steps:
            fields.update(nonfinite=self.nonfinite_total, skipped=self.skipped_steps)
        if if_main_process():
            append_log(self.log_path, "train", **fields)
            logger.info("train %s", " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items()))
        self._stats.zero_()
        self._last_log = now

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Training: flush the log and save the epoch's checkpoint. Validation: log its loss."""
        if stage == sb.Stage.TRAIN:
            if self._stats[1] > 0 or self._stats[2] > 0:
                self._log_train()
            self._save_checkpoint(end_of_epoch=self.step >= self._epoch_len)
        elif stage == sb.Stage.VALID:
            by_task = self.loss_by_task[sb.Stage.VALID].flush()  # every rank scored the whole set
            if if_main_process():
                append_log(self.log_path, "valid", epoch=epoch, step=self.optimizer_step, loss=float(stage_loss), **by_task)
                logger.info("valid epoch=%d step=%d loss=%.4g%s", epoch, self.optimizer_step, stage_loss,
                            "".join(f" {k}={v:.4g}" for k, v in by_task.items()))

    # ------------------------------------------------------------------ checkpoints
    def _should_save_intra_epoch_ckpt(self, last_ckpt_time, steps_since_ckpt):
        """Only right after an optimizer step (no half-accumulated gradients to lose)."""
        if not self._stepped or self.step >= self._epoch_len:
            return False
        if self.ckpt_interval_steps > 0:
            return self.optimizer_step % self.ckpt_interval_steps == 0
        if self.ckpt_interval_minutes > 0:
            decision = [(time.time() - last_ckpt_time) / 60.0 > self.ckpt_interval_minutes]
            if self.world_size > 1:
                torch.distributed.broadcast_object_list(decision, src=0)
            return decision[0]
        return False

    def _save_intra_epoch_ckpt(self):
        self._save_checkpoint(end_of_epoch=False)

    def _save_checkpoint(self, end_of_epoch: bool) -> None:
        """Save a checkpoint, at most one per optimizer step, and keep the newest ``keep_checkpoints``.

        A save at the optimizer step of an existing checkpoint (training stopped by
        ``optimizer_step_limit`` right after a periodic save, or an epoch whose last batches stepped
        nothing) brings no new weights: it is skipped where that checkpoint records the same
        place in the data, and otherwise (an end-of-epoch save after the periodic one) replaces
        it, so that ``--avg`` averages distinct steps and a resume starts from the later place.
        """
        meta = {"epoch": self.epoch, "step": self.step, "optimizer_step": self.optimizer_step}
        place = {**meta, "end-of-epoch": end_of_epoch}
        same_step = [c for c in self.checkpointer.list_checkpoints() if c.meta["optimizer_step"] == self.optimizer_step]
        if any({key: c.meta.get(key) for key in place} == place for c in same_step):
            return
        superseded = {c.path for c in same_step}
        self.checkpointer.save_and_keep_only(
            meta=meta,
            end_of_epoch=end_of_epoch,
            num_to_keep=self.config["keep_checkpoints"],
            ckpt_predicate=lambda c: c.path not in superseded,
        )
        if superseded:
            self.checkpointer.delete_checkpoints(num_to_keep=0, ckpt_predicate=lambda c: c.path in superseded)

    @mark_as_saver
    def _save_progress(self, path):
        state = {
            "step": self.step,
            "avg_train_loss": float(self.avg_train_loss),
            "optimizer_step": self.optimizer_step,
            "nonfinite_total": self.nonfinite_total,
            "skipped_steps": self.skipped_steps,
        }
        with open(path, "w", encoding="utf-8") as f:
            yaml.safe_dump(state, f)

    @mark_as_loader
    def _recover_progress(self, path, end_of_epoch):
        with open(path, encoding="utf-8") as f:
            state = yaml.safe_load(f)
        self.step = 0 if end_of_epoch else state["step"]
        self.avg_train_loss = state["avg_train_loss"]
        self.optimizer_step = state["optimizer_step"]
        self.nonfinite_total = state["nonfinite_total"]
        self.skipped_steps = state["skipped_steps"]

    # ------------------------------------------------------------------ the stage
    def record(self, train_set: TrainingSet) -> dict:
        """What a checkpoint must agree with to be resumed exactly."""
        c = self.config
        return {
            "stage": c["stage"],
            "model": self.model.config.to_dict(),
            "data": {
                "train_data": c["train_data"],
                "examples": len(train_set),
                "seed": c["seed"],
                "batching": c["batching"],
                "replay_sets": c["replay_sets"],
                "replay_ratio": c["replay_ratio"],
                "grad_accumulation_factor": c["grad_accumulation_factor"],
                "world_size": self.world_size,
            },
        }

    @staticmethod
    def task_types(dataset: TrainingSet) -> List[str]:
        """The task types whose losses the log breaks down (:class:`~diffa.train.loss_by_task.LossByTask`)."""
        return dataset.tasks()

    def fit_stage(self, train_set: TrainingSet, valid_set: Optional[TrainingSet] = None) -> Path:
        """Train (or resume) the stage, then write ``final/`` and ``loss.png``; returns ``final/``."""
        train_loader = self.make_train_loader(train_set)
        valid_loader = self.make_valid_loader(valid_set) if valid_set is not None else None
        self.loss_by_task = {sb.Stage.TRAIN: LossByTask(self.task_types(train_set)),
                             sb.Stage.VALID: LossByTask(self.task_types(valid_set) if valid_set is not None else [])}
        self.checkpointer.add_recoverable("model", TrainableWeights(self.model, self.record(train_set)))
        per_epoch = math.ceil(len(self.train_sampler) / self.grad_accumulation_factor)
        self.total_steps = per_epoch * self.config["number_of_epochs"]
        if self.optimizer_step_limit:
            self.total_steps = min(self.total_steps, self.optimizer_step_limit)
        c = self.config
        self.schedule = WarmupCosine(c["lr"], c["warmup_steps"], self.total_steps, c["min_lr_ratio"], c["lr_decay"])
        logger.info(
            "%d training examples, %d batches per epoch on each of %d ranks, %d optimizer steps in all",
            len(train_set), len(self.train_sampler), self.world_size, self.total_steps,
        )
        self.fit(self.epoch_counter, train_loader, valid_loader, progressbar=not self.noprogressbar)
        return self.finish()

    def on_fit_start(self):
        """SpeechBrain's start (DDP wrap, optimizer, recovery), then note where this run starts."""
        super().on_fit_start()
        self._start_step, self._start_time = self.optimizer_step, time.time()

    def finish(self) -> Path:
        """Average the newest ``avg`` checkpoints if asked, save ``final/`` and ``loss.png``."""
        final = self.out_dir / "final"
        n_avg = self.config["avg"]
        if n_avg > 1:
            found = latest_checkpoints(self.checkpointer, n_avg)
            if len(found) < n_avg:
                logger.warning("--avg %d: only %d checkpoints exist; averaging those", n_avg, len(found))
            self.checkpointer.recoverables["model"].load_state_dict(average_trainable(found), where="averaged checkpoints")
            logger.info("final model = average of %s", ", ".join(c.path.name for c in found))
        if if_main_process():
            self.model.save_pretrained(final)
            if os.path.exists(self.log_path):
                plot_loss(self.log_path, str(self.out_dir / "loss.png"), title=f"{self.out_dir.name} ({self.config['stage']})")
            logger.info("wrote %s", final)
        ddp_barrier()
        return final

