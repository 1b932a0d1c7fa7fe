"""diffa.train.vrpo / diffa.train.reference: VRPO objective, shared frozen reference, the Brain."""

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diffa.data.pairs import PairExample, collate_pairs
from diffa.diffusion.loss import mc_elbo
from diffa.diffusion.noise import mask_exactly_k
from diffa.model.diffa import DIFFA, tiny_config
from diffa.nnet.lora import LoRAConfig, lora_layers, lora_state_dict
from diffa.text.template import encode_example
from diffa.text.tokenizer import SentencePieceTokenizer, train_sentencepiece
from diffa.train import hparams
from diffa.train.reference import REFERENCE_ADAPTER, SharedReference
from diffa.train.stages import prepare_stage
from diffa.train.vrpo import VRPO_DEFAULTS, PairELBO, VRPOObjective, vrpo_settings

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    corpus = ["what pitch", "high", "low", "what pitch high", "what pitch low", "very high"] * 4
    path = tmp_path_factory.mktemp("spm") / "spm.model"
    return SentencePieceTokenizer(train_sentencepiece(corpus, path, vocab_size=60, byte_fallback=False))


def make_policy(tok, seed=0):
    """A tiny stage-3-like DIFFA (LoRA + adapters trainable) whose output depends on its audio.

    Random tiny models hear little: the Whisper convolutions are re-drawn with unit-variance
    outputs and the LM head is made confident, so a few steps can learn from the audio. Dropout
    is DIFFA-2's (Q-Former 0.1, LoRA 0.05): VRPO must not depend on it.
    """
    torch.manual_seed(seed)
    model = DIFFA(tiny_config(vocab=tok.vocab_size))
    with torch.no_grad():
        model.llm.transformer.ff_out.weight.normal_(0.0, 4 / 32**0.5)
        for module in model.encoder.modules():
            if isinstance(module, (torch.nn.Conv1d, torch.nn.Linear)):
                module.weight.normal_(0.0, module.weight[0].numel() ** -0.5)
    prepare_stage(model, "vrpo", LoRAConfig(r=4, alpha=8, dropout=0.05))
    return model


def make_pairs(tok, n, seed, chosen=("low", "high")):
    """n pairs of a task only the audio decides: class c has its own log-mel pattern, the chosen
    answer is ``chosen[c]``, the rejected one the other class's."""
    patterns = 2 * torch.randn(2, 16, generator=torch.Generator().manual_seed(99))
    g = torch.Generator().manual_seed(seed)
    pairs = []
    for i in range(n):
        c = i % 2
        win, lose = encode_example(tok, "what pitch", chosen[c]), encode_example(tok, "what pitch", chosen[1 - c])
        p = win.prompt_len
        pairs.append(PairExample(f"p{i}", patterns[c] + 0.5 * torch.randn(24 + i % 5, 16, generator=g),
                                 torch.tensor(win.input_ids[:p]), torch.tensor(win.input_ids[p:]),
                                 torch.tensor(lose.input_ids[p:]), win.audio_pos, {}))
    return pairs


def test_pair_elbo_equals_mc_elbo_on_full_logits(tok):
    model = make_policy(tok).eval()
    batch = collate_pairs(make_pairs(tok, 3, seed=1, chosen=("very high", "low")), tok.pad_id)
    masks, _, lengths = mask_exactly_k(batch["answer_mask"], 4, torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = PairELBO(model, tok.mask_id)(batch["feats"], batch["feat_lens"], batch["input_ids"], batch["audio_pos"],
                                             batch["audio_index"], masks, lengths)
        denoise = model.denoiser(batch["feats"], batch["feat_lens"], batch["audio_pos"][:3])
        full = mc_elbo(lambda x, mask, rows: denoise(x, mask, batch["audio_index"][rows]), batch["input_ids"], masks,
                       lengths, tok.mask_id)
    assert ours.shape == (4, 6)
    torch.testing.assert_close(ours, full, rtol=1e-5, atol=1e-5)


def test_each_side_is_scored_on_its_own_canvas_as_the_authors_collator_pads_it(tok):
    # the authors tokenize the chosen and the rejected sequences as two batches ("longest"
    # padding with eos, which counts as answer): a side's canvas is its own longest sequence
    model = make_policy(tok).eval()
    pairs = make_pairs(tok, 6, seed=2, chosen=("very high", "low"))[::2]  # the chosen answer is the longer one
    n = len(pairs)
    batch = collate_pairs(pairs, tok.pad_id)
    for rows, answers in ((slice(0, n), [p.chosen_ids for p in pairs]), (slice(n, 2 * n), [p.rejected_ids for p in pairs])):
        alone = torch.nn.utils.rnn.pad_sequence([torch.cat([p.prompt_ids, a]) for p, a in zip(pairs, answers)],
                                                batch_first=True, padding_value=tok.pad_id)
        assert batch["widths"][rows].tolist() == [alone.shape[1]] * n
        assert torch.equal(batch["input_ids"][rows, : alone.shape[1]], alone)
        assert batch["answer_mask"][rows].sum(-1).tolist() == [alone.shape[1] - len(p.prompt_ids) for p in pairs]
    assert batch["widths"][0] > batch["widths"][n]
    masks, _, lengths = mask_exactly_k(batch["answer_mask"], 4, torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = PairELBO(model, tok.mask_id)(batch["feats"], batch["feat_lens"], batch["input_ids"], batch["audio_pos"],
                                             batch["audio_index"], masks, lengths, batch["widths"])
        for rows in (slice(0, n), slice(n, 2 * n)):
            width = int(batch["widths"][rows][0])
            denoise = model.denoiser(batch["feats"], batch["feat_lens"], batch["audio_pos"][rows])
            side = mc_elbo(lambda x, mask, r: denoise(x, mask, batch["audio_index"][rows][r]),
                           batch["input_ids"][rows, :width], masks[:, rows, :width], lengths[rows], tok.mask_id)
            torch.testing.assert_close(ours[:, rows], side, rtol=1e-5, atol=1e-5)


def test_policy_and_reference_score_the_same_masked_sequences(tok, monkeypatch):
    policy = make_policy(tok).train()
    reference = SharedReference(policy)
    calls = []
    original = DIFFA.text_hidden

    def spy(self, audio, audio_lens, input_ids, audio_pos, attention_mask=None):
        active = {tuple(layer.active_adapters) for _, layer in lora_layers(self.llm)}
        calls.append({"model": self, "ids": input_ids.clone(), "grad": torch.is_grad_enabled(), "training": self.training,
                      "adapters": active, "llm_training": self.llm.training})
        return original(self, audio, audio_lens, input_ids, audio_pos, attention_mask)

    monkeypatch.setattr(DIFFA, "text_hidden", spy)
    batch = collate_pairs(make_pairs(tok, 2, seed=0), tok.pad_id)
    objective = VRPOObjective(reference, tok.mask_id)
    policy_elbo, reference_elbo = objective.elbos(PairELBO(policy, tok.mask_id), batch, n_draws=3)
    ref_call, pol_call = calls
    assert ref_call["model"] is reference.model and pol_call["model"] is policy
    assert torch.equal(ref_call["ids"], pol_call["ids"])  # antithetic: the very same masked sequences
    assert ref_call["ids"].shape == (3 * 4, batch["input_ids"].shape[1])
    assert (ref_call["ids"] == tok.mask_id).any() and not torch.equal(ref_call["ids"], batch["input_ids"].repeat(3, 1))
    assert ref_call["adapters"] == {(REFERENCE_ADAPTER,)} and pol_call["adapters"] == {("default",)}
    assert not ref_call["grad"] and not ref_call["training"] and not ref_call["llm_training"]
    # the policy too is scored without dropout, with gradients
    assert pol_call["grad"] and not pol_call["training"] and not pol_call["llm_training"]
    assert policy.training and policy.llm.training  # modes restored
    assert policy_elbo.requires_grad and not reference_elbo.requires_grad


def test_coupled_draws_give_a_pairs_two_answers_the_same_masks(tok):
    """Pairs whose two answers are the same: coupled, their ELBOs are equal draw for draw (a real
    pair's margin then carries only the noise of where the answers differ); drawn apart, they are not."""
    policy = make_policy(tok).eval()
    objective = VRPOObjective(SharedReference(policy), tok.mask_id)
    batch = collate_pairs(make_pairs(tok, 3, seed=0, chosen=("high", "high")), tok.pad_id)
    for coupled in (True, False):
        elbo, _ = objective.elbos(PairELBO(policy, tok.mask_id), batch, 2, torch.Generator().manual_seed(0),
                                  stratified=True, coupled=coupled)
        assert torch.equal(elbo[:3], elbo[3:]) is coupled


def test_step_zero_margin_is_zero_with_dropout_on(tok):
    """Dropout on (Q-Former 0.1, LoRA 0.05) and the policy in train mode: at step 0 the policy is the
    reference, so on shared masks the two ELBOs are bit-identical (antithetic sampling needs the same
    computation; with dropout on they differed by 1e-3), and the gradient still flows."""
    policy = make_policy(tok)
    assert policy.config.qformer_dropout > 0 and policy.config.lora["dropout"] > 0
    objective = VRPOObjective(SharedReference(policy.train()), tok.mask_id, beta=0.2)
    modes = {name: module.training for name, module in policy.named_modules()}
    batch = collate_pairs(make_pairs(tok, 4, seed=0, chosen=("very high", "low")), tok.pad_id)
    policy_elbo, reference_elbo = objective.elbos(PairELBO(policy, tok.mask_id), batch, n_draws=3)
    torch.testing.assert_close(policy_elbo.detach(), reference_elbo, rtol=0.0, atol=0.0)
    loss, stats = objective.loss(policy_elbo, reference_elbo)
    assert abs(stats["reward_margin"].item()) < 1e-5 and loss.item() == pytest.approx(math.log(2), abs=1e-5)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in policy.named_parameters() if ".lora_B.default." in n)
    assert {name: module.training for name, module in policy.named_modules()} == modes


def _bytes(tensors):
    return sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}.values())


def test_reference_is_frozen_and_shares_the_llada_base(tok, tmp_path):
    policy = make_policy(tok).train()
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    reference = SharedReference(policy)
    own = list(reference.parameters())
    snapshot = [p.detach().clone() for p in own]
    # one LLaDA base and one encoder in memory: the reference adds only its small copies
    assert reference.model.llm is policy.llm and reference.model.encoder is policy.encoder
    base = [p for n, p in policy.llm.named_parameters() if ".lora_" not in n]
    assert {p.data_ptr() for p in base} == {p.data_ptr() for n, p in reference.model.llm.named_parameters() if ".lora_" not in n}
    copies = [p for m in (reference.model.semantic, reference.model.acoustic, reference.model.prompts) for p in m.parameters()]
    both = list(policy.parameters()) + list(reference.model.parameters())
    assert _bytes(both) - _bytes(policy.parameters()) == _bytes(copies) < _bytes(base)
    assert sum(p.numel() for p in own) == sum(p.numel() for p in copies) + sum(
        p.numel() for n, p in policy.llm.named_parameters() if f".{REFERENCE_ADAPTER}." in n)

    objective = VRPOObjective(reference, tok.mask_id, beta=1.0)
    scorer = PairELBO(policy, tok.mask_id)
    trainable = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    batch = collate_pairs(make_pairs(tok, 4, seed=0), tok.pad_id)
    for _ in range(3):
        loss, _ = objective.loss(*objective.elbos(scorer, batch, n_draws=2))
        optimizer.zero_grad()
        loss.backward()
        assert all(p.grad is None and not p.requires_grad for p in own)
        optimizer.step()
    assert all(torch.equal(p, q) for p, q in zip(own, snapshot))
    changed = [n for n, p in policy.named_parameters() if n in before and not torch.equal(p, before[n])]
    assert any(".lora_B.default." in n for n in changed) and any(n.startswith("semantic.") for n in changed)
    assert all(".lora_" in n or n.startswith(("semantic.", "acoustic.")) for n in changed)

    # checkpoints and exports see the policy adapter only
    assert not any(REFERENCE_ADAPTER in k for k in lora_state_dict(policy.llm))
    policy.save_pretrained(tmp_path / "model")
    assert set(load_file(str(tmp_path / "model" / "lora.safetensors"))) == set(lora_state_dict(policy.llm))
    reloaded = DIFFA.from_pretrained(tmp_path / "model")
    assert torch.equal(lora_state_dict(reloaded.llm)[next(iter(lora_state_dict(policy.llm)))],
                       next(iter(lora_state_dict(policy.llm).values())))


def test_vrpo_raises_held_out_preference_accuracy(tok):
    policy = make_policy(tok).train()
    objective = VRPOObjective(SharedReference(policy), tok.mask_id, beta=1.0)
    scorer = PairELBO(policy, tok.mask_id)
    train, held_out = make_pairs(tok, 32, seed=0), collate_pairs(make_pairs(tok, 10, seed=1), tok.pad_id)

    def held_out_stats():
        policy.eval()
        with torch.no_grad():
            _, stats = objective.loss(*objective.elbos(scorer, held_out, 8, torch.Generator().manual_seed(5)))
        policy.train()
        return {k: float(v) for k, v in stats.items()}

    start = held_out_stats()
    assert start["policy_accuracy"] == start["reference_accuracy"]  # the policy starts as the stage-3 model
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-2)
    order = torch.Generator().manual_seed(2)
    for _ in range(30):
        idx = torch.randperm(len(train), generator=order)[:8].tolist()
        loss, _ = objective.loss(*objective.elbos(scorer, collate_pairs([train[i] for i in idx], tok.pad_id), 2))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    end = held_out_stats()
    assert end["reference_accuracy"] == start["reference_accuracy"] <= 0.75
    assert end["policy_accuracy"] >= 0.9 and end["policy_accuracy"] > end["reference_accuracy"] + 0.2
    assert end["reward_accuracy"] >= 0.8 and end["reward_margin"] > 0


def test_reference_from_a_directory(tok, tmp_path):
    policy = make_policy(tok)
    policy.save_pretrained(tmp_path / "stage3")
    saved_lora = {k: v.clone() for k, v in lora_state_dict(policy.llm).items()}
    with torch.no_grad():  # the policy moves on (e.g. a resumed VRPO run)
        for n, p in policy.named_parameters():
            if p.requires_grad:
                p.add_(0.5)
    reference = SharedReference.from_pretrained(policy, tmp_path / "stage3")
    saved_adapters = DIFFA.from_pretrained(tmp_path / "stage3").adapter_state_dict()
    assert all(torch.equal(v, saved_adapters[k]) for k, v in reference.model.adapter_state_dict().items())
    loaded = lora_state_dict(policy.llm, REFERENCE_ADAPTER)
    assert set(loaded) == set(saved_lora) and all(torch.equal(loaded[k], saved_lora[k]) for k in saved_lora)
    assert not all(torch.equal(lora_state_dict(policy.llm)[k], saved_lora[k]) for k in saved_lora)

    other = DIFFA(tiny_config(vocab=tok.vocab_size, d_llm=64))
    other.add_lora(LoRAConfig(r=4, alpha=8, dropout=0.0))
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(ValueError, match="other/config.json: the reference model is not the policy's architecture"):
        SharedReference.from_pretrained(make_policy(tok), tmp_path / "other")
    DIFFA(tiny_config(vocab=tok.vocab_size)).save_pretrained(tmp_path / "no_lora")
    with pytest.raises(FileNotFoundError, match="lora.safetensors not found"):
        SharedReference.from_pretrained(make_policy(tok), tmp_path / "no_lora")
    with pytest.raises(ValueError, match="needs a LoRA adapter"):
        SharedReference(DIFFA(tiny_config()))
    (tmp_path / "stage3" / "lora.safetensors").write_bytes(b"\x10\x00")
    with pytest.raises(ValueError, match=r"stage3/lora.safetensors: not a readable safetensors file .*export the model again"):
        SharedReference.from_pretrained(make_policy(tok), tmp_path / "stage3")
    (tmp_path / "stage3" / "config.json").write_text("{")
    with pytest.raises(ValueError, match=r"stage3/config.json: line 1: not valid JSON"):
        SharedReference.from_pretrained(make_policy(tok), tmp_path / "stage3")


def test_settings_and_the_diffa2_config(monkeypatch):
    assert vrpo_settings({}) == VRPO_DEFAULTS == {"beta": 0.2, "n_draws": 4, "valid_n_draws": 8, "stratified_draws": False,
                                                         "coupled_draws": False}
    for bad, message in (({"beta": 0}, "vrpo.beta must be > 0"), ({"n_draws": 0}, "vrpo.n_draws must be an integer >= 1"),
                         ({"stratified_draws": "yes"}, "vrpo.stratified_draws must be true or false, got 'yes'"),
                         ({"coupled_draws": 1}, "vrpo.coupled_draws must be true or false, got 1"),
                         ({"valid_n_draws": 1.5}, "vrpo.valid_n_draws must be an integer"), ({"betas": 1}, "unknown config key 'vrpo.betas'")):
        with pytest.raises(ValueError, match=message):
            vrpo_settings({"vrpo": bad})
    # the training config schema with its 'vrpo' section (diffa.train.hparams.SCHEMA["vrpo"])
    monkeypatch.setitem(hparams.SCHEMA, "vrpo", dict(VRPO_DEFAULTS))
    config = hparams.load_config(str(ROOT / "egs" / "diffa2" / "conf" / "stage4_vrpo.yaml"),
                                 hparams.parse_overrides(["--vrpo.n_draws", "8"]))
    assert config["stage"] == "vrpo" and config["lr"] == 5e-5 and config["number_of_epochs"] == 10
    assert vrpo_settings(config) == {"beta": 0.2, "n_draws": 8, "valid_n_draws": 8, "stratified_draws": False,
                                    "coupled_draws": False}
    assert config["batching"]["max_batch_size"] * 4 * config["grad_accumulation_factor"] == 16  # 4 GPUs


def test_brain_trains_logs_and_exports(tmp_path, monkeypatch):
    from diffa.bin import make_pairs as make_pairs_cli
    from diffa.bin import train
    from diffa.train.checkpoint import read_record
    from diffa.train.model_init import init_model
    from diffa.train.plot import read_log
    from diffa.train.toy import make_toy_setup

    import diffa.train.vrpo as vrpo_module

    monkeypatch.setitem(hparams.SCHEMA, "vrpo", dict(VRPO_DEFAULTS))
    monkeypatch.chdir(tmp_path)
    draws = set()  # (n, stratified) of every call: training as configured, held out by strata
    monkeypatch.setattr(vrpo_module, "mask_exactly_k", lambda *args, **kwargs: draws.add(
        (args[1], kwargs["stratified"])) or mask_exactly_k(*args, **kwargs))
    setup = make_toy_setup(tmp_path / "toy", n_examples=8)
    # DIFFA-2's dropout (Q-Former 0.1, LoRA 0.05): the step-0 margin must still be exactly 0
    stage3, _ = init_model({"stage": "sft", "init": {"whisper_dir": setup["whisper_dir"], "llada_dir": setup["llada_dir"]},
                            "model": {**setup["model"], "qformer_dropout": 0.1}, "frozen_dtype": "float32",
                            "lora": {"r": 2, "alpha": 4, "dropout": 0.05, "targets": ["q_proj", "v_proj"]}})
    stage3.save_pretrained(tmp_path / "stage3")
    make_pairs_cli.main(["--train_data", setup["dump"], "--out_dir", "pairs", "--valid_fraction", "0.25"])
    (tmp_path / "vrpo.yaml").write_text(
        f"stage: vrpo\ntokenizer_dir: {setup['tokenizer_dir']}\nlr: 1.0e-3\nlog_interval: 1\n"
        "lora: {r: 2, alpha: 4, dropout: 0.05, targets: [q_proj, v_proj]}\n"  # must match stage3's
        "batching:\n  max_batch_size: 2\nvrpo:\n  beta: 0.5\n  n_draws: 2\n  valid_n_draws: 3\n")
    train.main(["vrpo.yaml", "--output_folder", "exp", "--train_data", setup["dump"], "--init_from", "stage3",
                "--ref_model", "stage3", "--pairs", "pairs", "--device", "cpu"])
    log = read_log("exp/train_log.txt")
    assert len(log["vrpo"]) == len(log["train"]) >= 3
    assert set(log["vrpo"][0]) >= {"reward_margin", "reward_accuracy", "policy_accuracy", "reference_accuracy", "pairs"}
    assert log["vrpo"][0]["reward_margin"] == pytest.approx(0.0, abs=1e-5)  # first step: policy = reference, dropout off
    assert log["vrpo_valid"][0]["pairs"] == 2  # the held-out utterances' pairs
    final = load_file("exp/final/lora.safetensors")
    start = load_file(str(tmp_path / "stage3" / "lora.safetensors"))
    assert set(final) == set(start) and any(not torch.equal(final[k], start[k]) for k in start)
    record = read_record(str(next(Path("exp/save").glob("CKPT*")) / "model.ckpt"))
    assert record["vrpo"] == {"beta": 0.5, "n_draws": 2} and record["data"]["pairs"] == "pairs"  # as before the key
    assert draws == {(2, False), (3, True)}
    assert json.loads(Path("pairs/stats.json").read_text())["swap:transcript"] == 8
