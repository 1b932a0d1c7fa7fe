"""Answers sampled from a DIFFA model, for the preference pairs of mode ``sampled``
(:func:`diffa.train.pairs.build_pairs` ranks them against the reference)."""

from __future__ import annotations

import logging
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from diffa.data.collate import collate_prompts
from diffa.data.dataset import Example
from diffa.decode.decoder import decode_batch, in_halves_on_oom
from diffa.decode.results import ResultsFile
from diffa.text.template import encode_example

logger = logging.getLogger(__name__)


class ModelSampler:
    """Sample answers to task rows from a DIFFA model (the ``"sampled"`` mode's sampler).

    Each row is answered ``n_samples`` times by the LLaDA reverse process at ``temperature``
    (:func:`diffa.decode.decoder.decode_batch` with ``copies=n_samples``: the audio of a batch is
    encoded once and shared by its samples; answers end at the first eos/eot, as decoded ones). A
    batch that runs out of GPU memory is sampled in halves, as in decoding; a row that does not fit
    even alone gets no samples (so no pair).

    Arguments
    ---------
    model : DIFFA
        The model to sample from (used in eval mode, without gradients).
    tokenizer : object
        Its tokenizer.
    feats : Mapping
        ``utt -> (T, n_mels)`` features (e.g. :func:`diffa.data.kaldi.load_feats`).
    n_samples : int
        Answers per row.
    temperature : float
        Sampling temperature (> 0 for distinct samples).
    gen_length, block_length, steps : int
        Reverse-process settings (``block_length`` and ``steps`` default to ``gen_length``).
    batch_size : int
        Rows per call of the model (each with its ``n_samples`` copies).
    system : str, optional
        System prompt of the template.
    seed : int
        Seed of the sampling noise.
    cache : str, optional
        A JSONL file (``{"id": task id, "samples": [...]}`` lines,
        :class:`diffa.decode.results.ResultsFile`) that every batch's samples are appended to,
        flushed: rows found there are not sampled again, so a killed run resumes where it stopped.
        Whoever passes it makes sure it was written with the same model and settings.

    Example
    -------
    >>> import os, tempfile, numpy as np
    >>> from diffa.model.diffa import DIFFA, tiny_config
    >>> from diffa.text.tokenizer import SentencePieceTokenizer, train_sentencepiece
    >>> tok = SentencePieceTokenizer(train_sentencepiece(["who speaks male female"] * 4,
    ...     os.path.join(tempfile.mkdtemp(), "spm.model"), vocab_size=60, byte_fallback=False))
    >>> model = DIFFA(tiny_config(vocab=tok.vocab_size))
    >>> sampler = ModelSampler(model, tok, {"u": np.zeros((20, 16), np.float32)}, n_samples=2, gen_length=4)
    >>> answers = sampler([{"id": "u-0", "utt": "u", "task": "open_qa", "instruction": "who speaks", "answer": "male"}])
    >>> len(answers), len(answers[0]), all(isinstance(a, str) for a in answers[0])
    (1, 2, True)
    """

    def __init__(
        self,
        model,
        tokenizer,
        feats: Mapping,
        n_samples: int = 4,
        temperature: float = 1.0,
        gen_length: int = 32,
        block_length: Optional[int] = None,
        steps: Optional[int] = None,
        batch_size: int = 8,
        system: Optional[str] = None,
        seed: int = 0,
        cache: Optional[str] = None,
    ):
        if n_samples < 1 or batch_size < 1:
            raise ValueError(f"n_samples and batch_size must be >= 1, got {n_samples} and {batch_size}")
        self.model, self.tokenizer, self.feats = model, tokenizer, feats
        self.n_samples, self.temperature, self.batch_size, self.system = n_samples, temperature, batch_size, system
        self.gen_length = gen_length
        self.block_length = block_length or gen_length
        self.steps = steps or gen_length
        self.seed = seed
        self.cache = ResultsFile(cache) if cache else None
        self._stored: Optional[Dict[str, dict]] = None  # the cache's rows, read at the first call

    def _cached(self) -> Dict[str, dict]:
        """The rows of the cache (read once; a line cut short by a kill is dropped and rewritten)."""
        if self._stored is None:
            self._stored = self.cache.read()
            if self._stored:
                logger.info("%s: %d rows sampled by an earlier run are reused", self.cache.partial, len(self._stored))
                self.cache.restart(self._stored.values())
        return self._stored

    def _examples(self, rows: Sequence[dict]) -> List[Example]:
        out = []
        for row in rows:
            if row["utt"] not in self.feats:
                raise ValueError(f"task {row['id']!r}: utterance {row['utt']!r} has no features")
            enc = encode_example(self.tokenizer, row["instruction"], None, self.system)
            feats = torch.from_numpy(np.array(self.feats[row["utt"]], dtype=np.float32))
            out.append(Example(row["id"], feats, torch.tensor(enc.input_ids), enc.prompt_len, enc.audio_pos, row))
        return out

    @torch.no_grad()
    def __call__(self, rows: Sequence[dict]) -> List[List[str]]:
        """``n_samples`` answers for each row, in row order."""
        stored = self._cached() if self.cache else {}
        todo = [row for row in rows if row["id"] not in stored]
        was_training = self.model.training
        self.model.eval()
        generator = torch.Generator(device=self.model.llm.device).manual_seed(self.seed)
        sampling = dict(gen_length=self.gen_length, block_length=self.block_length, steps=self.steps,
                        temperature=self.temperature, remasking="low_confidence", factor=None, threshold=None,
                        cfg_scale=0.0)
        bar = tqdm(total=len(todo), desc="sampling", unit="row")
        try:
            def sample(chunk):
                batch = collate_prompts(self._examples(chunk), self.tokenizer.pad_id)
                texts, _ = decode_batch(self.model, self.tokenizer, batch, sampling, generator=generator,
                                        copies=self.n_samples)
                n = len(chunk)
                return [{"id": row["id"], "samples": [texts[d * n + b] for d in range(self.n_samples)]}
                        for b, row in enumerate(chunk)]

            for start in range(0, len(todo), self.batch_size):
                chunk = todo[start:start + self.batch_size]
                # a row that does not fit on the GPU even alone gets no samples, hence no pair
                sampled = in_halves_on_oom(sample, chunk, lambda row: {"id": row["id"], "samples": []})
                if self.cache:  # not the rows that did not fit: a resumed run (a bigger GPU?) tries again
                    self.cache.append([r for r in sampled if r["samples"]])
                stored.update((r["id"], r) for r in sampled)
                bar.update(len(chunk))
        finally:
            bar.close()
            self.model.train(was_training)
        return [stored[row["id"]]["samples"] for row in rows]
