"""Held-out preference accuracy of one or more models, with its spread over draw seeds.

Usage:
  python -m diffa.bin.score_pairs --pairs exp/pairs/valid --model_dir exp/stage3_sft exp/stage4_vrpo \\
      [--n_draws 8] [--seeds 8] [--seed 0] [--batch_size 8] [--num_buckets 5] [--out scores.json] \\
      [--device cuda --dtype bfloat16]

*Preference accuracy* is the fraction of pairs whose chosen answer has the larger ELBO (VRPO's
``vrpo_valid`` lines, :mod:`diffa.train.vrpo`). Each ELBO is a Monte-Carlo estimate, and with
answers of a few tokens a single estimate of the accuracy can be off by a point or two: this scores
every model with ``--seeds`` sets of draws (``--n_draws`` per answer, masked counts by strata, a
pair's two answers on the same random numbers, as VRPO's held-out scoring) and reports the mean and
standard deviation over the seeds ``--seed`` .. ``--seed + --seeds - 1``. Every model is scored on
the very same masks (seed s, batch b: ``diffa.train.vrpo.held_out_generator(s, b)``), so the difference
to the first model is paired: it is given with its own spread and the number of seeds on which it
is positive.

``--pairs`` is a directory with ``pairs.jsonl`` and ``feats.scp`` (stage 6 writes one for the
training pairs and ``valid/`` for the held-out ones). The pairs are batched as VRPO's validation
batches them (by length, ``--batch_size`` and ``--num_buckets`` as the config's ``batching``; the
eos padding of a batch is part of its answers, so the batching is part of the ELBO): egs/mini's
``--seed 1234 --seeds 1`` gives the accuracies of its stage 7 log. The models are loaded one at a
time (``--model_dir``: any model directory decoding takes) and must share a tokenizer. Also per pair source (``swap:gender``,
``sampled``, ...), the accuracy averaged over the seeds. ``--out`` writes everything as JSON.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import statistics
import sys
from typing import Dict, List, Optional, Sequence

import torch
from tqdm import tqdm

from diffa.bin._cli import entry_point_parser, error_status
from diffa.data.pairs import FEATS_FILE, PAIRS_FILE, PairDataset, collate_pairs
from diffa.decode.loading import add_model_arguments, load_for_decoding
from diffa.files import atomic_write
from diffa.train.sft import fixed_batches
from diffa.train.vrpo import PairELBO, held_out_generator, prefers_chosen, scorer_inputs


def get_parser() -> argparse.ArgumentParser:
    """The command-line parser.

    Example
    -------
    >>> args = get_parser().parse_args(["--pairs", "p", "--model_dir", "a", "b"])
    >>> args.model_dir, args.n_draws, args.seeds
    (['a', 'b'], 8, 8)
    """
    parser = entry_point_parser("diffa.bin.score_pairs", __doc__)
    parser.add_argument("--pairs", required=True, help=f"directory with {PAIRS_FILE} and {FEATS_FILE}")
    parser.add_argument("--model_dir", nargs="+", required=True, help="models to score (the first is the baseline)")
    add_model_arguments(parser)
    parser.add_argument("--n_draws", type=int, default=8, help="ELBO draws per answer (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=8, help="sets of draws (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="the first set's seed (default: %(default)s)")
    parser.add_argument("--batch_size", type=int, default=8, help="pairs per forward (default: %(default)s)")
    parser.add_argument("--num_buckets", type=int, default=5, help="length buckets (default: %(default)s)")
    parser.add_argument("--out", help="write the scores as JSON here")
    return parser


@torch.no_grad()
def score_model(model, data: PairDataset, tokenizer, n_draws: int, seeds: Sequence[int],
                batches: Sequence[Sequence[int]], desc: str = "") -> torch.Tensor:
    """(seeds, pairs) bool: whether ``model`` prefers each pair's chosen answer, per seed of draws
    (``tokenizer``: its mask and pad ids; ``batches``: lists of pair indices, e.g. from :func:`diffa.train.sft.fixed_batches`).

    Example
    -------
    >>> import os, tempfile, numpy as np, kaldiio
    >>> from diffa.data.pairs import write_pairs
    >>> from diffa.model.diffa import DIFFA, tiny_config
    >>> from diffa.text.tokenizer import SentencePieceTokenizer, train_sentencepiece
    >>> tmp = tempfile.TemporaryDirectory()
    >>> tok = SentencePieceTokenizer(train_sentencepiece(["a man a woman who speaks"] * 4,
    ...     os.path.join(tmp.name, "spm.model"), vocab_size=60, byte_fallback=False))
    >>> kaldiio.save_ark(f"{tmp.name}/f.ark", {"u1": np.ones((20, 16), np.float32)}, scp=f"{tmp.name}/feats.scp")
    >>> write_pairs(f"{tmp.name}/pairs.jsonl", [{"id": f"p{i}", "utt": "u1", "prompt": "who speaks", "chosen": "a man",
    ...             "rejected": "a woman", "source": "swap:gender"} for i in range(3)])
    >>> data = PairDataset(f"{tmp.name}/pairs.jsonl", f"{tmp.name}/feats.scp", tok)
    >>> model = DIFFA(tiny_config(vocab=tok.vocab_size)).eval()
    >>> prefers = score_model(model, data, tok, n_draws=2, seeds=[0, 1, 2], batches=[[0, 1], [2]])
    >>> prefers.shape, prefers.dtype
    (torch.Size([3, 3]), torch.bool)
    >>> torch.equal(prefers, score_model(model, data, tok, 2, [0, 1, 2], [[0, 1], [2]]))   # the same draws
    True
    >>> tmp.cleanup()
    """
    scorer = PairELBO(model, tokenizer.mask_id)
    device = next(model.parameters()).device
    prefers = torch.zeros(len(seeds), len(data), dtype=torch.bool)
    for number, rows in enumerate(tqdm(batches, desc=desc or "pairs", unit="batch", disable=None)):
        batch = collate_pairs([data[i] for i in rows], tokenizer.pad_id)
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        for i, seed in enumerate(seeds):
            elbo = scorer(*scorer_inputs(batch, n_draws, held_out_generator(seed, number), stratified=True,
                                         coupled=True)).mean(0)
            prefers[i, list(rows)] = prefers_chosen(elbo).cpu()
    return prefers


def summary(prefers: Dict[str, torch.Tensor], sources: List[str]) -> dict:
    """Accuracies (percent) per model and seed, their mean and standard deviation, the paired
    differences to the first model, and per source the accuracy averaged over seeds.

    Example
    -------
    >>> a = torch.tensor([[True, False], [True, True]]); b = torch.tensor([[True, True], [True, True]])
    >>> s = summary({"sft": a, "vrpo": b}, ["swap:gender", "swap:rate"])
    >>> s["sft"]["per_seed"], s["sft"]["mean"], s["vrpo"]["vs_first"]
    ([50.0, 100.0], 75.0, {'per_seed': [50.0, 0.0], 'mean': 25.0, 'std': 35.36, 'higher_on': 1})
    >>> s["sft"]["by_source"]
    {'swap:gender': 100.0, 'swap:rate': 50.0}
    """
    def spread(values):
        return {"per_seed": [round(v, 2) for v in values], "mean": round(statistics.fmean(values), 2),
                "std": round(statistics.stdev(values), 2) if len(values) > 1 else 0.0}

    out, first = {}, None
    for name, table in prefers.items():
        per_seed = (100.0 * table.double().mean(1)).tolist()
        by_source = collections.defaultdict(list)
        for source, hits in zip(sources, table.double().mean(0).tolist()):
            by_source[source].append(hits)
        out[name] = {**spread(per_seed),
                     "by_source": {k: round(100.0 * statistics.fmean(v), 2) for k, v in sorted(by_source.items())}}
        if first is None:
            first = per_seed
            continue
        diffs = [a - b for a, b in zip(per_seed, first)]
        out[name]["vs_first"] = {**spread(diffs), "higher_on": sum(d > 0 for d in diffs)}
    return out


def print_table(scores: dict) -> None:
    """The scores (:func:`summary`) as two tables: per model, then per source.

    Example
    -------
    >>> a = torch.tensor([[True, False], [True, True]]); b = torch.tensor([[True, True], [True, True]])
    >>> print_table(summary({"sft": a, "vrpo": b}, ["swap:gender", "swap:rate"]))
    model    accuracy (%)  vs sft
    sft        75.00 ± 35.36
    vrpo      100.00 ± 0.00   +25.00 ± 35.36 (higher on 1 of 2 seeds)
    <BLANKLINE>
    source                                       sft                    vrpo
    swap:gender                               100.00                  100.00
    swap:rate                                  50.00                  100.00
    """
    names = list(scores)
    seeds = len(scores[names[0]]["per_seed"])
    width = max(len(n) for n in names) + 2
    print(f"{'model':<{width}}{'accuracy (%)':>16}  vs {names[0]}")
    for name in names:
        s = scores[name]
        vs = s.get("vs_first")
        paired = f"{vs['mean']:+.2f} ± {vs['std']:.2f} (higher on {vs['higher_on']} of {seeds} seeds)" if vs else ""
        print(f"{name:<{width}}{s['mean']:>8.2f} ± {s['std']:<5.2f}  {paired}")
    sources = list(scores[names[0]]["by_source"])
    print(f"\n{'source':<24}" + "".join(f"{n[-22:]:>24}" for n in names))
    for source in sources:
        print(f"{source:<24}" + "".join(f"{scores[n]['by_source'][source]:>24.2f}" for n in names))


def main(argv: Optional[List[str]] = None) -> int:
    """Score the models (module docstring); returns the exit status.

    Example
    -------
    One pair, and the same random tiny model saved twice: the same weights on the same draws
    give the same accuracy, seed by seed.

    >>> import tempfile, numpy as np, kaldiio
    >>> from diffa.data.pairs import write_pairs
    >>> from diffa.model.diffa import DIFFA, tiny_config
    >>> from diffa.text.tokenizer import SentencePieceTokenizer, train_sentencepiece
    >>> tmp = tempfile.TemporaryDirectory(); d = tmp.name
    >>> tok = SentencePieceTokenizer(train_sentencepiece(["a man a woman who speaks"] * 4, f"{d}/tok/spm.model",
    ...                                                  vocab_size=60, byte_fallback=False))
    >>> model = DIFFA(tiny_config(vocab=tok.vocab_size)); model.save_pretrained(f"{d}/a"); model.save_pretrained(f"{d}/b")
    >>> write_pairs(f"{d}/pairs/pairs.jsonl", [{"id": "p1", "utt": "u1", "prompt": "who speaks", "chosen": "a man",
    ...                                         "rejected": "a woman", "source": "swap:gender"}])
    >>> kaldiio.save_ark(f"{d}/f.ark", {"u1": np.ones((20, 16), np.float32)}, scp=f"{d}/pairs/feats.scp")
    >>> main(["--pairs", f"{d}/pairs", "--model_dir", f"{d}/a", f"{d}/b", "--tokenizer_dir", f"{d}/tok",
    ...       "--n_draws", "2", "--seeds", "2", "--device", "cpu"])
    /.../pairs: 1 pairs, 2 draws per answer (by strata, coupled), seeds 0-1, batches of up to 8 in 5 length buckets
    model ...accuracy (%)  vs /.../a
    /.../a ...
    /.../b ... +0.00 ± 0.00 (higher on 0 of 2 seeds)
    <BLANKLINE>
    source ...
    swap:gender ...
    0
    >>> tmp.cleanup()
    """
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    return error_status(lambda: score_pairs(args))


def score_pairs(args: argparse.Namespace) -> None:
    """The work of :func:`main`: load each model in turn, score it, print (and write) the scores.

    Example
    -------
    Bad settings and a missing pair directory are reported before any model is loaded:

    >>> score_pairs(get_parser().parse_args(["--pairs", "exp/pairs/valid", "--model_dir", "m", "--seeds", "0"]))
    Traceback (most recent call last):
     ...
    ValueError: --seeds must be >= 1, got 0
    >>> score_pairs(get_parser().parse_args(["--pairs", "exp/none", "--model_dir", "m"]))
    Traceback (most recent call last):
     ...
    FileNotFoundError: exp/none/pairs.jsonl does not exist: --pairs names a directory of stage 6
    (python -m diffa.bin.make_pairs), e.g. exp/pairs/valid
    """
    for key in ("n_draws", "seeds", "batch_size", "num_buckets"):
        if getattr(args, key) < 1:
            raise ValueError(f"--{key} must be >= 1, got {getattr(args, key)}")
    pairs, feats = os.path.join(args.pairs, PAIRS_FILE), os.path.join(args.pairs, FEATS_FILE)
    for path in (pairs, feats):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} does not exist: --pairs names a directory of stage 6 "
                                    "(python -m diffa.bin.make_pairs), e.g. exp/pairs/valid")
    prefers, data, vocab = {}, None, None
    seeds = range(args.seed, args.seed + args.seeds)
    for model_dir in args.model_dir:
        model, tok = load_for_decoding(model_dir, args.tokenizer_dir, args.device, args.dtype, args.audio_dtype)
        if data is None:
            data = PairDataset(pairs, feats, tok)
            batches = fixed_batches(data, model.config, None, args.batch_size, args.num_buckets)
            row = data.rows[0]
            sample = " ".join((row["prompt"], row["chosen"], row["rejected"]))
        fingerprint = (tok.vocab_size, tok.mask_id, tok.pad_id, tok.eot_id, tuple(tok.encode(sample)))
        if vocab is None:
            vocab = fingerprint
        elif fingerprint != vocab:
            raise ValueError(f"{model_dir}: its tokenizer is not {args.model_dir[0]}'s (the first pair's text, or the "
                             "special ids, encode otherwise): the models must share one to be scored on the same pairs")
        prefers[model_dir] = score_model(model, data, tok, args.n_draws, seeds, batches, desc=model_dir)
        del model
    scores = summary(prefers, [row.get("source", "") for row in data.rows])
    print(f"{args.pairs}: {len(data)} pairs, {args.n_draws} draws per answer (by strata, coupled), "
          f"seeds {seeds[0]}-{seeds[-1]}, batches of up to {args.batch_size} in {args.num_buckets} length buckets")
    print_table(scores)
    if args.out:
        with atomic_write(args.out) as f:
            json.dump({"pairs": args.pairs, "n_pairs": len(data), "n_draws": args.n_draws, "seeds": list(seeds),
                       "batch_size": args.batch_size, "num_buckets": args.num_buckets, "models": scores}, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
