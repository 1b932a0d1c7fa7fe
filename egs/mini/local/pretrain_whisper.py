#!/usr/bin/env python3
"""Pre-train the tiny Whisper encoder of egs/mini and save it as an official Whisper checkpoint.

Usage:
  local/pretrain_whisper.py --train_data data/train --train_dump dump/train \\
      --dev_data data/dev --dev_dump dump/dev --tokenizer_dir exp/pretrained/tokenizer \\
      --out_dir exp/pretrained/whisper --seed 0

No pretrained Whisper exists at this size, so egs/mini makes one. A Whisper-shaped encoder
(``transformers``' ``WhisperEncoder``: two convolutions, sinusoidal positions, pre-LN layers)
reads the Whisper log-mel of stage 2 in variable-length mode (``pad_to_30s=False``) and learns
two things from the training set, with heads that are thrown away afterwards:

* what is said: CTC over the tokenizer's pieces (the words of the answers) on the final hidden
  state (50 Hz), blank = an extra class. CTC alone escapes its all-blank plateau slowly, so a
  second head is trained with frame-level cross-entropy against a flat-start alignment (as in
  HMM flat starts: the utterance's frames are shared out among its pieces in proportion to their
  number of characters; sound clips' frames are labelled "no speech"), which teaches the frames
  their words within the first epochs; the first epoch goes from the shortest batch to the
  longest (SortaGrad);
* what the clip sounds like: for every property the multiple-choice questions ask about (gender,
  rate, pitch, kind, beeps, tone, noise, melody, loudness) a classifier on an attention-pooled
  final hidden state; clips without a property do not count for it.

Then DIFFA keeps the encoder frozen, as it keeps Whisper. After training, greedy CTC decoding on
the dev set (voices and sentences never seen in training) and the dev accuracy of each property
are printed and written to ``<out_dir>/pretrain_log.txt``. ``<out_dir>`` holds ``config.json`` +
``model.safetensors`` (``model.encoder.*`` keys, ``diffa.nnet.whisper.WhisperEncoder``), written
into a temporary directory that replaces ``<out_dir>`` at the end. The run is deterministic for a
given ``--seed`` and ``--threads``.
"""
import argparse
import json
import logging
import time
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm
from transformers import WhisperConfig

from diffa.data.batching import BucketBatchSampler
from diffa.data.kaldi import load_feats, read_map
from diffa.nnet.whisper import WhisperEncoder
from diffa.scoring.wer import score_wer
from diffa.text.tokenizer import load_tokenizer
from pretrain_utils import clip_properties, learning_rate, publish_model, run_script, setup_run

logger = logging.getLogger("pretrain_whisper")
NO_SPEECH = "<nospeech>"


def get_parser():
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train_data", required=True, help="training data dir (text, tasks.jsonl)")
    parser.add_argument("--train_dump", required=True, help="its features (feats.scp)")
    parser.add_argument("--dev_data", required=True, help="dev data dir, for the report")
    parser.add_argument("--dev_dump", required=True, help="its features")
    parser.add_argument("--tokenizer_dir", required=True, help="directory holding spm.model")
    parser.add_argument("--out_dir", required=True, help="where the Whisper checkpoint goes")
    parser.add_argument("--d_model", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--ffn", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--max_frames", type=int, default=1000, help="padded input frames per batch")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--warmup", type=int, default=30, help="warm-up steps")
    parser.add_argument("--flat_weight", type=float, default=1.0, help="weight of the flat-start loss")
    parser.add_argument("--label_weight", type=float, default=1.0, help="weight of the property losses")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--log_interval", type=int, default=25, help="steps between loss lines")
    return parser


class Clips:
    """Features, CTC targets and property labels of one set, in memory.

    The CTC and flat-start heads predict *units*: the pieces that occur in the training
    transcripts (about a hundred of the tokenizer's pieces), which keeps their output layers small.

    Arguments
    ---------
    data_dir : str
        Kaldi data dir with ``text`` and ``tasks.jsonl``.
    dump_dir : str
        Its ``feats.scp``.
    tok : tokenizer
        Turns transcripts into CTC targets.
    values : dict, optional
        property -> values (the training set's; default: this set's own).
    units : list of int, optional
        Token ids of the units (the training set's; default: this set's own). Pieces that are
        not units are left out of the targets.
    """

    def __init__(self, data_dir, dump_dir, tok, values=None, units=None):
        feats = load_feats(f"{dump_dir}/feats.scp")
        text = read_map(f"{data_dir}/text")
        facts, own_values = clip_properties(f"{data_dir}/tasks.jsonl")
        self.values = values or own_values
        self.utts = sorted(utt for utt in text if utt in feats)
        if not self.utts:
            raise ValueError(f"{dump_dir}/feats.scp has none of the utterances of {data_dir}/text; run stage 2")
        self.feats = [torch.from_numpy(np.array(feats[u], dtype=np.float32)) for u in self.utts]  # a writable copy
        self.text = [text[u] for u in self.utts]
        pieces = [tok.encode(t) if t != NO_SPEECH else [] for t in self.text]
        self.units = units or sorted({p for ps in pieces for p in ps})
        unit = {p: i for i, p in enumerate(self.units)}
        pieces = [[p for p in ps if p in unit] for ps in pieces]
        self.targets = [torch.tensor([unit[p] for p in ps], dtype=torch.long) for ps in pieces]
        self.frames = [flat_start(t.tolist(), [max(1, len(tok.decode([p]))) for p in ps],
                                  (f.shape[0] - 1) // 2 + 1, len(self.units))
                       for t, ps, f in zip(self.targets, pieces, self.feats)]
        index = {p: {v: i for i, v in enumerate(vals)} for p, vals in self.values.items()}
        # (n_clips, n_properties) class index, -1 where the clip lacks the property or value
        self.labels = torch.tensor([[index[p].get(facts.get(u, {}).get(p), -1) for p in self.values]
                                    for u in self.utts], dtype=torch.long)

    def batch(self, idx):
        """A :class:`Batch` of the clips ``idx``."""
        targets = [self.targets[i] for i in idx]
        return Batch(
            feats=torch.nn.utils.rnn.pad_sequence([self.feats[i] for i in idx], batch_first=True),
            feat_lens=torch.tensor([self.feats[i].shape[0] for i in idx]),
            targets=torch.cat(targets),
            target_lens=torch.tensor([len(t) for t in targets]),
            frames=torch.nn.utils.rnn.pad_sequence([self.frames[i] for i in idx], batch_first=True,
                                                   padding_value=-100),
            labels=self.labels[idx])


class Batch(NamedTuple):
    """Padded features (B, T, n_mels) and lengths (B,); CTC targets, concatenated, and their
    lengths (B,); flat-start frame labels (B, T') padded with -100; property labels (B, P), -1
    where unknown."""

    feats: torch.Tensor
    feat_lens: torch.Tensor
    targets: torch.Tensor
    target_lens: torch.Tensor
    frames: torch.Tensor
    labels: torch.Tensor


def flat_start(pieces, sizes, n_frames, no_speech):
    """Frame labels of a flat-start alignment: the frames are shared out among the pieces, in
    order, in proportion to ``sizes``; without pieces every frame is ``no_speech``.

    Arguments
    ---------
    pieces : list of int
        Token ids of the transcript.
    sizes : list of int
        Relative duration of each piece (e.g. its number of characters).
    n_frames : int
        Encoder frames of the utterance.
    no_speech : int
        Label of frames of clips without speech.

    Returns
    -------
    torch.Tensor
        (n_frames,) long.

    Example
    -------
    >>> flat_start([7, 8], [1, 3], 8, 0).tolist()
    [7, 7, 8, 8, 8, 8, 8, 8]
    >>> flat_start([], [], 3, 0).tolist()
    [0, 0, 0]
    """
    if not pieces:
        return torch.full((n_frames,), no_speech, dtype=torch.long)
    edges = torch.tensor(sizes, dtype=torch.float).cumsum(0) / sum(sizes)
    position = (torch.arange(n_frames) + 0.5) / n_frames
    return torch.tensor(pieces)[torch.searchsorted(edges, position).clamp(max=len(pieces) - 1)]


class PretrainHeads(torch.nn.Module):
    """CTC and flat-start projections and per-property attention-pooled classifiers.

    Arguments
    ---------
    d_model : int
        Encoder width.
    n_units : int
        Output units (:class:`Clips`); the CTC blank (and flat-start "no speech") is class
        ``n_units``.
    n_classes : list of int
        Number of values of each property.

    Example
    -------
    >>> heads = PretrainHeads(8, 10, [2, 3])
    >>> ctc, flat, props = heads(torch.randn(2, 5, 8), torch.tensor([5, 3]))
    >>> ctc.shape, flat.shape, [p.shape for p in props]
    (torch.Size([2, 5, 11]), torch.Size([2, 5, 11]), [torch.Size([2, 2]), torch.Size([2, 3])])
    """

    def __init__(self, d_model, n_units, n_classes):
        super().__init__()
        self.ctc = torch.nn.Linear(d_model, n_units + 1)
        self.flat = torch.nn.Linear(d_model, n_units + 1)
        self.attend = torch.nn.Linear(d_model, len(n_classes))
        self.classify = torch.nn.ModuleList(torch.nn.Linear(d_model, n) for n in n_classes)

    def forward(self, hidden, lens):
        """CTC and flat-start logits (B, T, V + 1) and one (B, n_values) tensor per property."""
        pad = torch.arange(hidden.shape[1])[None] >= lens[:, None]
        weights = self.attend(hidden).masked_fill(pad[..., None], float("-inf")).softmax(dim=1)
        pooled = torch.einsum("btp,btd->bpd", weights, hidden)
        return (self.ctc(hidden), self.flat(hidden),
                [head(pooled[:, p]) for p, head in enumerate(self.classify)])


def losses(heads, enc_out, batch):
    """CTC loss (mean over utterances with speech), flat-start frame cross-entropy and the summed
    property cross-entropies, as a (3,) tensor."""
    ctc_logits, flat_logits, prop_logits = heads(enc_out.last_hidden, enc_out.lens)
    speech = batch.target_lens > 0
    ctc = torch.zeros(())
    if speech.any():
        log_probs = ctc_logits.log_softmax(-1)[speech].transpose(0, 1)
        ctc = F.ctc_loss(log_probs, batch.targets, enc_out.lens[speech], batch.target_lens[speech],
                         blank=ctc_logits.shape[-1] - 1, zero_infinity=True)
    flat = F.cross_entropy(flat_logits.transpose(1, 2), batch.frames, ignore_index=-100)
    known = batch.labels >= 0
    prop = sum((F.cross_entropy(logits, batch.labels[:, p], ignore_index=-1)
                for p, logits in enumerate(prop_logits) if known[:, p].any()), torch.zeros(()))
    return torch.stack([ctc, flat, prop])


def ctc_greedy(log_probs, lens, blank):
    """Best path: per-frame argmax, repeats merged, blanks dropped; one id list per utterance."""
    best = log_probs.argmax(-1)
    keep = (best != blank) & (best != F.pad(best, (1, 0), value=blank)[:, :-1])
    keep &= torch.arange(best.shape[1])[None] < lens[:, None]
    return [row[mask].tolist() for row, mask in zip(best, keep)]


@torch.no_grad()
def evaluate(encoder, heads, clips, tok, max_frames=8000):
    """Dev WER/CER of greedy CTC on speech clips and the accuracy of each property."""
    hyps, correct, total = {}, torch.zeros(len(clips.values)), torch.zeros(len(clips.values))
    order = np.argsort([f.shape[0] for f in clips.feats])
    size = max(1, max_frames // max(f.shape[0] for f in clips.feats))
    for start in range(0, len(order), size):
        idx = order[start:start + size].tolist()
        batch = clips.batch(idx)
        out = encoder._encode(batch.feats, batch.feat_lens)
        ctc_logits, _, prop_logits = heads(out.last_hidden, out.lens)
        labels = batch.labels
        for i, ids in zip(idx, ctc_greedy(ctc_logits, out.lens, ctc_logits.shape[-1] - 1)):
            hyps[clips.utts[i]] = tok.decode([clips.units[u] for u in ids])
        for p, logits in enumerate(prop_logits):
            known = labels[:, p] >= 0
            correct[p] += (logits.argmax(-1) == labels[:, p])[known].sum()
            total[p] += known.sum()
    refs = {u: t for u, t in zip(clips.utts, clips.text) if t != NO_SPEECH}
    hyps = {u: hyps[u] for u in refs}
    report = {"wer": score_wer(refs, hyps, "wenet").counts.rate,
              "cer": score_wer(refs, hyps, "wenet", unit="char").counts.rate}
    report.update({f"acc_{p}": round(100.0 * float(c / n), 2)
                   for p, c, n in zip(clips.values, correct, total) if n > 0})
    examples = [f"{u}: ref '{refs[u]}' hyp '{hyps[u]}'" for u in sorted(refs)[:3]]
    return report, examples


def build_encoder(args, n_mels):
    """A random Whisper encoder (variable-length mode) whose parameters train."""
    config = WhisperConfig(
        num_mel_bins=n_mels, d_model=args.d_model, encoder_layers=args.layers,
        encoder_attention_heads=args.heads, encoder_ffn_dim=args.ffn, decoder_layers=1,
        decoder_attention_heads=args.heads, decoder_ffn_dim=args.ffn, max_source_positions=1500,
        max_target_positions=448, vocab_size=51865)
    encoder = WhisperEncoder(config, pad_to_30s=False)
    encoder.encoder.requires_grad_(True)
    encoder.encoder.embed_positions.requires_grad_(False)  # sinusoids, fixed as in Whisper
    return encoder


def epoch_batches(sampler, lengths, epoch):
    """The sampler's batches of ``epoch``; the first epoch in order of length (SortaGrad)."""
    batches = sampler.batches(epoch)
    if epoch == 0:
        batches = sorted(batches, key=lambda b: max(lengths[i] for i in b))
    return batches


def main():
    """Train, evaluate on dev, save (see the module docstring)."""
    args = get_parser().parse_args()
    setup_run(args.seed, args.threads)
    tok = load_tokenizer(args.tokenizer_dir)
    train = Clips(args.train_data, args.train_dump, tok)
    dev = Clips(args.dev_data, args.dev_dump, tok, values=train.values, units=train.units)
    encoder = build_encoder(args, n_mels=train.feats[0].shape[1])
    heads = PretrainHeads(args.d_model, len(train.units), [len(v) for v in train.values.values()])
    params = [p for p in list(encoder.parameters()) + list(heads.parameters()) if p.requires_grad]
    logger.info("%d training clips (%d with speech), %d dev; %d units; encoder %.2fM parameters; "
                "properties %s", len(train.utts), sum(len(t) > 0 for t in train.targets), len(dev.utts),
                len(train.units),
                sum(p.numel() for p in encoder.parameters()) / 1e6, json.dumps(train.values))
    lengths = [f.shape[0] for f in train.feats]
    sampler = BucketBatchSampler(lengths, max_tokens=args.max_frames, num_buckets=8, seed=args.seed)
    batches = [b for epoch in range(args.epochs) for b in epoch_batches(sampler, lengths, epoch)]
    weights = torch.tensor([1.0, args.flat_weight, args.label_weight])
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    start, running = time.time(), torch.zeros(3)
    for step, idx in enumerate(tqdm(batches, desc="whisper", unit="step")):
        batch = train.batch(idx)
        parts = losses(heads, encoder._encode(batch.feats, batch.feat_lens), batch)
        optimizer.zero_grad()
        (parts @ weights).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, len(batches), args.lr, args.warmup)
        optimizer.step()
        running += parts.detach()
        if (step + 1) % args.log_interval == 0 or step + 1 == len(batches):
            running /= step % args.log_interval + 1
            logger.info("step %d/%d: ctc %.3f, flat start %.3f, properties %.3f", step + 1, len(batches),
                        *running.tolist())
            running.zero_()
    train_seconds = time.time() - start
    report, examples = evaluate(encoder, heads, dev, tok)
    report.update(steps=len(batches), train_seconds=round(train_seconds, 1))
    lines = [f"dev {k}: {v}" for k, v in report.items()] + examples
    publish_model(encoder, args.out_dir, lines)
    logger.info("saved the encoder to %s", args.out_dir)


if __name__ == "__main__":
    run_script(main, "local/pretrain_whisper.py")
