"""VRPO (curriculum stage 4): preference optimisation of DIFFA with ELBO-based DPO.

For a batch of preference pairs ``(x, y_w, y_l)`` (:mod:`diffa.data.pairs`) (VRPO, LLaDA 1.5 paper)::

    loss = -log sigmoid(beta [(B_pol(y_w) - B_ref(y_w)) - (B_pol(y_l) - B_ref(y_l))])

where each ELBO ``B`` averages ``n`` Monte-Carlo draws; a draw picks ``k ~ U{1..L}`` and masks
exactly ``k`` of the ``L`` answer positions (:func:`~diffa.diffusion.noise.mask_exactly_k`) and
scores ``(L / k) sum_masked log p``. How this module does it:

* **one forward per model and side.** The n draws of the B chosen sequences form one
  ``(n * B, L_w)`` batch (draw-major) and those of the B rejected ones another, each as wide as its
  side's longest sequence, as the authors' collator pads them (the eos padding is answer, so the
  width is part of the ELBO); pairs whose sides are as wide share one forward. :class:`PairELBO`
  scores them; the audio of a pair is encoded once and shared by its 2n rows; logits are
  computed only at the masked positions (as in SFT, :class:`~diffa.train.sft.MaskedPredictor`),
  which is what keeps a VRPO step as light as an SFT step with the same number of rows.
* **antithetic draws.** The policy and the reference score the very same masked sequences
  (one set of masks per step).
* **no dropout.** The policy is scored with dropout off (eval mode, gradients on;
  :func:`~diffa.train.reference.dropout_off`), as the reference is and as DPO implementations do by default (TRL's
  ``disable_dropout``): with dropout on (DIFFA-2: Q-Former 0.1, LoRA 0.05) the two would differ
  even on identical weights and masks, the step-0 reward margin would not be 0 and the antithetic
  draws would no longer cancel their noise. At step 0 (policy = reference) the margin is 0 up to
  float rounding (PyTorch may pick another matmul kernel for a frozen weight than for a trainable
  one: about 1e-7 of an ELBO). The per-batch seeding of :class:`~diffa.train.sft.SFTBrain` now
  only draws the masks, so a resumed run still redraws them exactly.
* **no second LLaDA.** The reference is the frozen stage-3 model sharing the policy's encoder and
  LLaDA base (:class:`~diffa.train.reference.SharedReference`: a frozen second LoRA adapter and
  frozen copies of the small audio adapters). It runs first, in eval mode without gradients, so
  its activations are freed before the policy builds its graph.
* :class:`VRPOBrain` is :class:`~diffa.train.sft.SFTBrain` (batching, DDP, accumulation,
  clipping, schedule, checkpoints, logs) with the pair data, this objective, and extra log lines:
  ``vrpo`` (training reward margin, reward accuracy, policy and reference preference accuracy)
  and ``vrpo_valid`` (the same on the held-out pairs; *preference accuracy* is the fraction of
  pairs whose chosen answer has the larger ELBO, for the policy and for the stage-3 reference on
  the same draws).

Settings (config section ``vrpo``, :data:`VRPO_DEFAULTS`): ``beta`` (0.2), ``n_draws`` (4,
DIFFA-2's MC budget), ``valid_n_draws`` (8: more draws for a steadier held-out accuracy;
:func:`~diffa.diffusion.noise.mask_exactly_k`),
``stratified_draws`` (false: training draws the masked counts independently, as the paper does;
true: by strata too, a variance reduction of ours that the paper does not use) and
``coupled_draws`` (false, as the paper; true: the chosen and the rejected answer of a pair share
their random numbers, the masking ratio and the position scores, so that the noise of their ELBO
difference, which is what the loss reads, partly cancels; ours too). Held-out ELBOs are always
drawn by strata and coupled.

Example
-------
>>> import torch
>>> from diffa.model.diffa import DIFFA, tiny_config
>>> from diffa.nnet.lora import LoRAConfig
>>> from diffa.train.reference import SharedReference
>>> policy = DIFFA(tiny_config()); policy.add_lora(LoRAConfig())
>>> objective = VRPOObjective(SharedReference(policy), mask_id=99, beta=0.2)
>>> ids = torch.randint(0, 90, (2, 7))
>>> batch = {"feats": torch.randn(1, 40, 16), "feat_lens": torch.tensor([40]), "input_ids": ids,
...          "audio_pos": torch.tensor([2, 2]), "audio_index": torch.tensor([0, 0]),
...          "answer_mask": torch.arange(7).expand(2, 7) >= 4}
>>> policy_elbo, reference_elbo = objective.elbos(PairELBO(policy.train(), 99), batch, n_draws=4)
>>> loss, stats = objective.loss(policy_elbo, reference_elbo)
>>> round(loss.item(), 4), abs(stats["reward_margin"].item()) < 1e-5   # the policy starts as the reference
(0.6931, True)
"""

from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

import speechbrain as sb
import torch
import torch.nn.functional as F
from speechbrain.utils.distributed import if_main_process

from diffa.data.pairs import FEATS_FILE, PAIRS_FILE, VALID_DIR, PairDataset, collate_pairs
from diffa.diffusion.loss import vrpo_loss
from diffa.diffusion.noise import mask_exactly_k
from diffa.train.model_init import require_model_dir
from diffa.train.plot import append_log
from diffa.train.reference import SharedReference, dropout_off
from diffa.train.sft import SFTBrain

logger = logging.getLogger(__name__)

VRPO_DEFAULTS: Dict[str, Any] = {"beta": 0.2, "n_draws": 4, "valid_n_draws": 8, "stratified_draws": False,
                                 "coupled_draws": False}
"""The ``vrpo`` config section: DPO inverse temperature, ELBO draws per step, draws when scoring
the held-out pairs, whether training draws the masked counts by strata and gives the two answers of
a pair the same random numbers."""
# statistics accumulated per pair: reward margin, reward accuracy, policy / reference accuracy
STAT_NAMES = ("reward_margin", "reward_accuracy", "policy_accuracy", "reference_accuracy")


def vrpo_settings(config: Mapping[str, Any]) -> Dict[str, Any]:
    """The ``vrpo`` section of a training config over :data:`VRPO_DEFAULTS`, checked.

    Example
    -------
    >>> vrpo_settings({"vrpo": {"beta": 0.1}})
    {'beta': 0.1, 'n_draws': 4, 'valid_n_draws': 8, 'stratified_draws': False, 'coupled_draws': False}
    >>> vrpo_settings({"vrpo": {"n_draw": 2}})
    Traceback (most recent call last):
     ...
    ValueError: unknown config key 'vrpo.n_draw'; valid keys under 'vrpo': beta, n_draws, valid_n_draws, stratified_draws, coupled_draws
    """
    section = config.get("vrpo") or {}
    unknown = sorted(set(section) - set(VRPO_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown config key 'vrpo.{unknown[0]}'; valid keys under 'vrpo': {', '.join(VRPO_DEFAULTS)}")
    settings = {**VRPO_DEFAULTS, **section}
    if not isinstance(settings["beta"], (int, float)) or settings["beta"] <= 0:
        raise ValueError(f"vrpo.beta must be > 0, got {settings['beta']!r}")
    for key in ("n_draws", "valid_n_draws"):
        if not isinstance(settings[key], int) or isinstance(settings[key], bool) or settings[key] < 1:
            raise ValueError(f"vrpo.{key} must be an integer >= 1, got {settings[key]!r}")
    for key in ("stratified_draws", "coupled_draws"):
        if not isinstance(settings[key], bool):
            raise ValueError(f"vrpo.{key} must be true or false, got {settings[key]!r}")
    return settings


class PairELBO(torch.nn.Module):
    """Per-draw ELBO estimates of the sequences of a pair batch, one forward per canvas width.

    Row ``d * R' + r`` of a forward is draw d of its r-th sequence (the R' rows of one width); the
    audio of each pair is encoded once and gathered for its rows; only the masked positions go
    through the LM head. Each draw's estimate is ``(L_r / k) sum_masked log p`` (float32), as
    :func:`diffa.diffusion.loss.mc_elbo` computes from full logits.

    Arguments
    ---------
    model : DIFFA
        The model whose ELBOs are estimated (policy or reference).
    mask_id : int
        Mask token id.

    Example
    -------
    >>> import torch
    >>> from diffa.model.diffa import DIFFA, tiny_config
    >>> scorer = PairELBO(DIFFA(tiny_config()), mask_id=99)
    >>> masks = torch.zeros(3, 2, 6, dtype=torch.bool); masks[..., 4] = True
    >>> elbo = scorer(torch.randn(1, 40, 16), torch.tensor([40]), torch.randint(0, 90, (2, 6)),
    ...               torch.tensor([1, 1]), torch.tensor([0, 0]), masks, torch.tensor([2, 2]))
    >>> elbo.shape
    torch.Size([3, 2])
    """

    def __init__(self, model: torch.nn.Module, mask_id: int):
        super().__init__()
        self.model = model
        self.mask_id = mask_id

    def forward(self, feats, feat_lens, input_ids, audio_pos, audio_index, masks, lengths, widths=None) -> torch.Tensor:
        """(n, R) ELBO draws.

        Arguments
        ---------
        feats, feat_lens : torch.Tensor
            (P, T, n_mels) and (P,): the audio of the P pairs.
        input_ids : torch.Tensor
            (R, L) clean sequences (prompt + answer + eos padding).
        audio_pos : torch.Tensor
            (R,) where each sequence's audio goes.
        audio_index : torch.Tensor
            (R,) which pair's audio each sequence uses.
        masks : torch.Tensor
            (n, R, L) bool, the masked positions of each draw (at least one per draw, none past
            the row's width).
        lengths : torch.Tensor
            (R,) answer length L_r of each sequence.
        widths : torch.Tensor, optional
            (R,) each row's canvas: the model sees ``input_ids[r, :widths[r]]`` only (rows of one
            width share a forward). Default: every row is L wide.
        """
        n, rows, length = masks.shape
        audio, audio_lens = self.model.encode_audio(feats, feat_lens)
        widths = torch.full((rows,), length, device=masks.device) if widths is None else widths
        elbo = audio.new_zeros(n, rows, dtype=torch.float32)
        for width in widths.unique().tolist():
            group = (widths == width).nonzero(as_tuple=True)[0]
            flat = masks[:, group, :width].reshape(n * len(group), width)
            targets = input_ids[group, :width].repeat(n, 1)
            source = audio_index[group].repeat(n)
            hidden = self.model.text_hidden(audio[source], audio_lens[source], targets.masked_fill(flat, self.mask_id),
                                            audio_pos[group].repeat(n))
            logits = self.model.llm.lm_head(hidden[flat])
            log_p = -F.cross_entropy(logits.float(), targets[flat], reduction="none")
            sums = log_p.new_zeros(n * len(group)).index_add(0, flat.nonzero(as_tuple=True)[0], log_p)
            elbo[:, group] = (sums * lengths[group].repeat(n).to(sums.dtype) / flat.sum(-1).to(sums.dtype)).view(n, len(group))
        return elbo


def scorer_inputs(batch: Mapping[str, Any], n_draws: int, generator: Optional[torch.Generator] = None,
                  stratified: bool = False, coupled: bool = False) -> tuple:
    """The arguments of a :class:`PairELBO` call on a pair batch (:func:`~diffa.data.pairs.collate_pairs`),
    with ``n_draws`` masks per sequence drawn by :func:`~diffa.diffusion.noise.mask_exactly_k`
    (``stratified``: masked counts by strata; ``coupled``: a pair's two answers share their draws).

    Example
    -------
    >>> from diffa.data.pairs import PairExample
    >>> pair = PairExample("p", torch.zeros(8, 2), torch.tensor([1, 2]), torch.tensor([7, 9]),
    ...                    torch.tensor([8, 9]), 1, {})
    >>> args = scorer_inputs(collate_pairs([pair], pad_id=0), 4, torch.Generator().manual_seed(0), coupled=True)
    >>> masks, lengths = args[5], args[6]
    >>> masks.shape, lengths.tolist(), torch.equal(masks[:, 0], masks[:, 1])
    (torch.Size([4, 2, 4]), [2, 2], True)
    """
    groups = batch["audio_index"] if coupled else None
    masks, _, lengths = mask_exactly_k(batch["answer_mask"], n_draws, generator, stratified=stratified, groups=groups)
    return (batch["feats"], batch["feat_lens"], batch["input_ids"], batch["audio_pos"], batch["audio_index"], masks,
            lengths, batch.get("widths"))


def held_out_generator(seed: int, number: int) -> torch.Generator:
    """The generator of the masks of held-out batch ``number`` (VRPO's validation and
    ``diffa.bin.score_pairs``): the same masks at every validation, and for every model scored.

    Example
    -------
    >>> torch.equal(torch.rand(2, generator=held_out_generator(1234, 3)), torch.rand(2, generator=held_out_generator(1234, 3)))
    True
    """
    return torch.Generator().manual_seed(seed * 1_000_003 + number)


def prefers_chosen(elbo: torch.Tensor) -> torch.Tensor:
    """(B,) bool: whether each pair's chosen answer has the larger ELBO, from the (2B,) ELBOs of a
    pair batch (chosen rows first): what *preference accuracy* averages.

    Example
    -------
    >>> prefers_chosen(torch.tensor([-1.0, -5.0, -2.0, -3.0])).tolist()
    [True, False]
    """
    half = elbo.shape[0] // 2
    return elbo[:half] > elbo[half:]


class VRPOObjective:
    """VRPO on pair batches: shared masks, reference first (no grad), then the policy (dropout off).

    Arguments
    ---------
    reference : SharedReference
        The frozen reference.
    mask_id : int
        Mask token id.
    beta : float
        DPO inverse temperature (DIFFA-2: 0.2).

    Example
    -------
    :meth:`loss` on given ELBOs of two pairs (chosen rows first): the policy prefers both chosen
    answers more than the reference does (reward margins 3 and 2); the reference prefers one.

    >>> from diffa.model.diffa import DIFFA, tiny_config
    >>> from diffa.nnet.lora import LoRAConfig
    >>> policy = DIFFA(tiny_config())
    >>> policy.add_lora(LoRAConfig(r=4))
    >>> objective = VRPOObjective(SharedReference(policy), mask_id=99, beta=1.0)
    >>> loss, stats = objective.loss(torch.tensor([-2.0, -4.0, -6.0, -5.0]), torch.tensor([-3.0, -5.0, -4.0, -4.0]))
    >>> round(loss.item(), 4), {name: value.item() for name, value in stats.items()}
    (0.0878, {'reward_margin': 2.5, 'reward_accuracy': 1.0, 'policy_accuracy': 1.0, 'reference_accuracy': 0.5})
    """

    def __init__(self, reference: SharedReference, mask_id: int, beta: float = 0.2):
        self.reference = reference
        self.reference_scorer = PairELBO(reference.model, mask_id)
        self.beta = beta

    def elbos(
        self, policy_scorer: torch.nn.Module, batch: Mapping[str, Any], n_draws: int,
        generator: Optional[torch.Generator] = None, stratified: bool = False, coupled: bool = False,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """n-draw ELBOs (2B,) of every sequence of ``batch`` (:func:`~diffa.data.pairs.collate_pairs`)
        under the policy (differentiable) and the reference (constant), on the same masks, both
        without dropout (the policy's train/eval modes are restored afterwards).

        ``policy_scorer`` is a :class:`PairELBO` of the policy (possibly DDP-wrapped);
        ``stratified`` draws the masked counts by strata and ``coupled`` gives the chosen and the
        rejected answer of a pair the same random numbers
        (:func:`~diffa.diffusion.noise.mask_exactly_k`).
        """
        args = scorer_inputs(batch, n_draws, generator, stratified, coupled)
        with self.reference.active():
            reference = self.reference_scorer(*args).mean(0)
        with dropout_off(policy_scorer):
            return policy_scorer(*args).mean(0), reference

    def loss(self, policy: torch.Tensor, reference: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """VRPO loss and statistics from the (2B,) ELBOs of :meth:`elbos` (chosen rows first).

        Statistics (detached means over the B pairs): ``reward_margin``, ``reward_accuracy``
        (:func:`~diffa.diffusion.loss.vrpo_loss`), ``policy_accuracy`` and
        ``reference_accuracy`` (fraction of pairs whose chosen ELBO exceeds the rejected one).
        """
        half = policy.shape[0] // 2
        loss, stats = vrpo_loss(policy[:half], reference[:half], policy[half:], reference[half:], self.beta)
        return loss, {
            "reward_margin": stats["reward_margin"],
            "reward_accuracy": stats["accuracy"],
            "policy_accuracy": prefers_chosen(policy.detach()).float().mean(),
            "reference_accuracy": prefers_chosen(reference).float().mean(),
        }


class VRPOBrain(SFTBrain):
    """VRPO training (see module docstring); selected by ``stage: vrpo``.

    Arguments
    ---------
    model : DIFFA
        The policy, prepared for stage ``vrpo`` (:func:`diffa.train.model_init.init_model`
        from the stage-3 model).
    config : dict
        Training config: ``pairs`` (the directory :mod:`diffa.bin.make_pairs` wrote),
        ``ref_model`` (the stage-3 model; default: a copy of ``model`` as loaded) and the
        ``vrpo`` section (:func:`vrpo_settings`); ``batching`` counts pairs (a forward holds
        ``2 * n_draws`` sequences per pair).
    tokenizer : object
        Its ``mask_id`` and ``pad_id`` are used.
    run_opts : dict, optional
        SpeechBrain run options.

    Example
    -------
    One pair batch through the Brain's forward and objective (``fit_stage`` runs these per batch):

    >>> import tempfile, types
    >>> from diffa.data.pairs import PairExample
    >>> from diffa.model.diffa import DIFFA, tiny_config
    >>> from diffa.train.hparams import REQUIRED, SCHEMA
    >>> from diffa.train.stages import prepare_stage
    >>> defaults = {key: value for key, value in SCHEMA.items() if value is not REQUIRED}
    >>> tok = types.SimpleNamespace(mask_id=99, pad_id=98)  # the tiny LLaDA's mask and eos ids
    >>> pair = PairExample("p1", torch.randn(40, 16), torch.tensor([1, 2, 3]), torch.tensor([7, 98]),
    ...                    torch.tensor([8, 8, 98]), 1, {})
    >>> with tempfile.TemporaryDirectory() as out:
    ...     model = DIFFA(tiny_config()); _ = prepare_stage(model, "vrpo")
    ...     config = dict(defaults, stage="vrpo", tokenizer_dir="tok", output_folder=out, vrpo={"n_draws": 2})
    ...     brain = VRPOBrain(model, config, tok, run_opts={"device": "cpu"})
    ...     batch = collate_pairs([pair], tok.pad_id)
    ...     elbos = brain.compute_forward(batch, sb.Stage.TRAIN)
    ...     loss = brain.compute_objectives(elbos, batch, sb.Stage.TRAIN)
    >>> brain.vrpo["n_draws"], {name: tuple(value.shape) for name, value in elbos.items()}
    (2, {'policy': (2,), 'reference': (2,)})
    >>> round(loss.item(), 4)  # the policy starts as the reference: log 2
    0.6931
    >>> VRPOBrain.load_data({"pairs": None}, tok)
    Traceback (most recent call last):
    ...
    ValueError: stage vrpo needs --pairs DIR with pairs.jsonl and feats.scp (got None); make them with stage 6 ...
    """

    def __init__(self, model, config: Dict[str, Any], tokenizer, run_opts: Optional[dict] = None):
        self.vrpo = vrpo_settings(config)
        # built before the Brain so that the frozen reference adapter is left out of DDP and the optimizer
        if config.get("ref_model"):
            reference = SharedReference.from_pretrained(model, require_model_dir(config["ref_model"]))
        else:
            reference = SharedReference(model)
        super().__init__(model, config, tokenizer, run_opts=run_opts)
        scorer = PairELBO(model, self.mask_id)
        torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
            scorer, [n for n, p in scorer.named_parameters() if not p.requires_grad] + [n for n, _ in scorer.named_buffers()]
        )
        # the SFT predictor's slot: same parameters, pair-batch forward (wrapped by DDP at fit start)
        self.modules["predictor"] = scorer
        reference.model.to(self.device)
        self.objective = VRPOObjective(reference, self.mask_id, self.vrpo["beta"])
        self._sums = {stage: torch.zeros(len(STAT_NAMES) + 1, dtype=torch.float64) for stage in (sb.Stage.TRAIN, sb.Stage.VALID)}
        self._valid_batches = 0
        self.valid_stats: Dict[str, float] = {}

    @classmethod
    def load_data(cls, config: Dict[str, Any], tokenizer):
        """``(train pairs, held-out pairs or None)`` from the ``pairs`` directory."""
        pairs_dir = config.get("pairs")
        if not pairs_dir or not os.path.isfile(os.path.join(pairs_dir, PAIRS_FILE)):
            raise ValueError(
                f"stage vrpo needs --pairs DIR with {PAIRS_FILE} and {FEATS_FILE} (got {pairs_dir!r}); "
                "make them with stage 6 (python -m diffa.bin.make_pairs)"
            )
        opts = {"system": config["system_prompt"], "max_answer_tokens": config["max_answer_tokens"]}
        sets = []
        for folder in (pairs_dir, os.path.join(pairs_dir, VALID_DIR)):
            path = os.path.join(folder, PAIRS_FILE)
            dataset = PairDataset(path, os.path.join(folder, FEATS_FILE), tokenizer, **opts) if os.path.isfile(path) else None
            if dataset is not None:
                dataset.replay_from = len(dataset)  # the SFT loader's replay boundary: no replay in VRPO
                logger.info("%s: %d pairs", path, len(dataset))
            sets.append(dataset)
        if config.get("valid_data"):
            logger.info("stage vrpo validates on %s, not on --valid_data", os.path.join(pairs_dir, VALID_DIR))
        return sets[0], sets[1]

    @staticmethod
    def task_types(dataset) -> List[str]:
        """None: VRPO logs no SFT loss to break down."""
        return []

    def _loader(self, dataset, batch_sampler) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            dataset,
            batch_sampler=batch_sampler,
            collate_fn=lambda examples: collate_pairs(examples, self.pad_id),
            num_workers=self.config["num_workers"],
            pin_memory=self.device_type == "cuda",
        )

    def compute_forward(self, batch, stage):
        """Policy and reference ELBOs of the batch's sequences on shared masks.

        Training masks come from the global RNG, which :meth:`fit_batch` seeds per batch (so a
        resumed run redraws them exactly; there is no dropout to seed, :func:`~diffa.train.reference.dropout_off`);
        held-out masks are seeded by batch number, the same at every validation.
        """
        batch = {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
        if stage == sb.Stage.TRAIN:
            n_draws, generator = self.vrpo["n_draws"], None
            stratified, coupled = self.vrpo["stratified_draws"], self.vrpo["coupled_draws"]
        else:  # held out: by strata and coupled, for a steadier accuracy at the same cost
            n_draws, generator = self.vrpo["valid_n_draws"], held_out_generator(self.config["seed"], self._valid_batches)
            stratified = coupled = True
            self._valid_batches += 1
        policy, reference = self.objective.elbos(self.modules.predictor, batch, n_draws, generator, stratified, coupled)
        return {"policy": policy, "reference": reference}

    def compute_objectives(self, predictions, batch, stage):
        """The VRPO loss; its statistics are accumulated for the log."""
        loss, stats = self.objective.loss(predictions["policy"], predictions["reference"])
        pairs = len(batch["ids"])
        row = torch.tensor([float(stats[name]) * pairs for name in STAT_NAMES] + [pairs], dtype=torch.float64)
        self._sums[sb.Stage.TRAIN if stage == sb.Stage.TRAIN else sb.Stage.VALID] += row
        return loss

    def _global_scale(self, batch, loss: torch.Tensor):
        """The loss is a mean over pairs: scale by ``local pairs * world / global pairs``."""
        local = len(batch["ids"])
        stats = torch.tensor([float(local), float(not torch.isfinite(loss))], device=self.device)
        if self.world_size > 1:
            torch.distributed.all_reduce(stats)
        return float(local) * self.world_size / stats[0].item(), stats[1].item() == 0

    def _flush(self, stage, kind: str, reduce: bool, **fields) -> Dict[str, float]:
        """Write the accumulated statistics of ``stage`` as a ``kind`` log line and reset them."""
        sums = self._sums[stage].to(self.device, copy=True)
        self._sums[stage].zero_()
        if reduce and self.world_size > 1:
            torch.distributed.all_reduce(sums)
        sums = sums.cpu()
        if sums[-1] == 0:
            return {}
        means = {name: float(sums[i] / sums[-1]) for i, name in enumerate(STAT_NAMES)}
        if if_main_process():
            append_log(self.log_path, kind, **fields, step=self.optimizer_step, pairs=int(sums[-1]), **means)
            logger.info("%s %s", kind, " ".join(f"{k}={v:.4g}" for k, v in means.items()))
        return means

    def _log_train(self) -> None:
        self._flush(sb.Stage.TRAIN, "vrpo", reduce=True, epoch=self.epoch)
        super()._log_train()

    def on_stage_start(self, stage, epoch=None):
        """Reset the held-out statistics and mask seeds before validation."""
        if stage != sb.Stage.TRAIN:
            self._sums[sb.Stage.VALID].zero_()
            self._valid_batches = 0
        super().on_stage_start(stage, epoch)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """After validation: log the held-out preference accuracies (every rank scored all pairs)."""
        if stage == sb.Stage.VALID:
            self.valid_stats = self._flush(sb.Stage.VALID, "vrpo_valid", reduce=False, epoch=epoch)
        super().on_stage_end(stage, stage_loss, epoch)

    def record(self, train_set) -> dict:
        """SFT's resume record plus the pairs and the training's VRPO settings (``stratified_draws``
        and ``coupled_draws`` only when true, so that checkpoints from before they existed still resume)."""
        record = super().record(train_set)
        record["data"]["pairs"] = self.config["pairs"]
        record["vrpo"] = {k: v for k, v in self.vrpo.items()
                          if k != "valid_n_draws" and (k not in ("stratified_draws", "coupled_draws") or v)}
        return record
