"""A toy training setup in one call: tiny official-format Whisper and LLaDA, tokenizer, data.

For tests and for trying the trainer without downloads. :func:`make_toy_setup` writes

* ``whisper/``: a random ``transformers`` Whisper checkpoint (config.json + model.safetensors);
* ``llada/``: a random LLaDA directory in the official layout, whose output head is initialised
  large enough that a frozen LLM can still be driven to confident predictions;
* ``tokenizer/spm.model``: a SentencePiece tokenizer with the special tokens;
* ``dump/<set>/``: ``feats.scp`` (kaldiio arks), ``utt2num_frames`` and ``tasks.jsonl``: each
  answer is a few words, and its utterance "says" them: one noisy segment of a word-specific
  log-mel template per word (a toy ASR task, so the answer is only recoverable from the audio).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Dict, Sequence, Tuple, Union

import kaldiio
import numpy as np
import torch
from transformers import WhisperConfig, WhisperModel

from diffa.data.tasks import write_tasks
from diffa.nnet.llada import LLaDAConfig, LLaDAModel
from diffa.text.template import prompt_text
from diffa.text.tokenizer import SentencePieceTokenizer, train_sentencepiece

WORDS = "red green blue cat dog bird one two three big small loud soft fast slow".split()
INSTRUCTIONS = ("What is said?", "Transcribe the audio.")


def make_toy_setup(
    root: Union[str, os.PathLike],
    n_examples: int = 16,
    n_mels: int = 16,
    d_llm: int = 32,
    seed: int = 0,
    set_name: str = "train",
    answer_words: Tuple[int, int] = (2, 4),
    instructions: Sequence[str] = INSTRUCTIONS,
) -> Dict[str, object]:
    """Write the toy files under ``root`` (see module docstring) and return their paths.

    Arguments
    ---------
    root : str or os.PathLike
        Output directory.
    n_examples : int
        Utterances (one example each).
    n_mels : int
        Log-mel bins.
    d_llm : int
        LLaDA width.
    seed : int
        Seed of every random choice.
    set_name : str
        Name of the dump directory.
    answer_words : (int, int)
        Fewest and most words per answer.
    instructions : sequence of str
        Instructions, used in turn.

    Returns
    -------
    dict
        ``whisper_dir``, ``llada_dir``, ``tokenizer_dir``, ``dump`` (paths) and ``model`` (the
        ``model:`` config section for fresh adapters).

    Example
    -------
    >>> import tempfile
    >>> from diffa.data.tasks import read_tasks
    >>> with tempfile.TemporaryDirectory() as root:
    ...     toy = make_toy_setup(root, n_examples=3, answer_words=(1, 2))
    ...     written = sorted(os.listdir(root)), sorted(os.listdir(toy["dump"]))
    ...     rows = read_tasks(os.path.join(toy["dump"], "tasks.jsonl"))
    ...     n_mels = kaldiio.load_scp(os.path.join(toy["dump"], "feats.scp"))["utt000"].shape[1]
    >>> sorted(toy), toy["model"]["taps"]
    (['dump', 'llada_dir', 'model', 'tokenizer_dir', 'whisper_dir'], [1, 2])
    >>> written
    (['dump', 'llada', 'tokenizer', 'whisper'], ['feats.ark', 'feats.scp', 'tasks.jsonl', 'utt2num_frames'])
    >>> [r["id"] for r in rows], rows[0]["instruction"], all(w in WORDS for r in rows for w in r["answer"].split())
    (['utt000-asr', 'utt001-asr', 'utt002-asr'], 'What is said?', True)
    >>> n_mels
    16
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    answers = [" ".join(rng.choice(WORDS, size=int(rng.integers(answer_words[0], answer_words[1] + 1)))) for _ in range(n_examples)]
    rows = [
        {"id": f"utt{i:03d}-asr", "utt": f"utt{i:03d}", "task": "asr", "instruction": instructions[i % len(instructions)], "answer": a}
        for i, a in enumerate(answers)
    ]
    tok_dir = root / "tokenizer"
    corpus = answers * 3 + [prompt_text(i) for i in instructions] * 3 + WORDS * 10
    tok = SentencePieceTokenizer(train_sentencepiece(corpus, tok_dir / "spm.model", vocab_size=120, model_type="bpe", byte_fallback=False))
    dump = root / "dump" / set_name
    dump.mkdir(parents=True, exist_ok=True)
    # Every word has its own log-mel template; an utterance says its answer word by word.
    templates = {w: 2.0 * rng.normal(size=n_mels) for w in WORDS}
    with kaldiio.WriteHelper(f"ark,scp:{dump}/feats.ark,{dump}/feats.scp") as writer, open(dump / "utt2num_frames", "w") as frames:
        for row in rows:
            segments = [np.tile(templates[w], (int(rng.integers(12, 20)), 1)) for w in row["answer"].split()]
            feats = np.concatenate(segments) + 0.3 * rng.normal(size=(sum(len(x) for x in segments), n_mels))
            writer(row["utt"], feats.astype(np.float32))
            frames.write(f"{row['utt']} {len(feats)}\n")
    write_tasks(str(dump / "tasks.jsonl"), rows)

    torch.manual_seed(seed)
    whisper_dir = root / "whisper"
    whisper = WhisperModel(
        WhisperConfig(
            num_mel_bins=n_mels, d_model=16, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=32,
            decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=32, max_source_positions=1500,
            max_target_positions=32, vocab_size=8, pad_token_id=0, bos_token_id=1, eos_token_id=2,
            decoder_start_token_id=1,
        )
    )
    with torch.no_grad():  # unit-gain convolutions: the input, not the positional table, dominates
        for conv in (whisper.encoder.conv1, whisper.encoder.conv2):
            conv.weight.normal_(0.0, 1.0 / math.sqrt(conv.in_channels * conv.kernel_size[0]))
    whisper.save_pretrained(str(whisper_dir))
    llm = LLaDAModel(
        LLaDAConfig(
            d_model=d_llm, n_layers=2, n_heads=2, n_kv_heads=2, mlp_hidden_size=2 * d_llm, vocab_size=tok.vocab_size,
            embedding_size=tok.vocab_size, mask_token_id=tok.mask_id, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id,
        )
    )
    # Unit-gain initialisation (std 1/sqrt(d)), and a head giving logits of a few units: a frozen
    # random LLM then passes the audio on and can still be driven to confident predictions.
    llm.init_weights(std=1.0 / math.sqrt(d_llm), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        llm.transformer.ff_out.weight.mul_(4.0)
    llada_dir = root / "llada"
    llm.save_pretrained(llada_dir)
    model = {"taps": [1, 2], "n_prompts": 3, "n_queries": 4, "qformer_ffn": 32, "qformer_dropout": 0.0}
    return {
        "whisper_dir": str(whisper_dir),
        "llada_dir": str(llada_dir),
        "tokenizer_dir": str(tok_dir),
        "dump": str(dump),
        "model": model,
    }
