"""The two adapters that turn Whisper hidden states into LLM input embeddings (DIFFA, DIFFA-2).

* :class:`SemanticAdapter` reads the encoder's last hidden state (50 Hz) and emits one LLM
  embedding per 4 frames (12.5 Hz): drop the last ``T mod 4`` frames, Conv1d(d, d, 3, 1, 1) ->
  GELU -> Conv1d(d, 4d, 3, 4, 1) -> Linear(4d, d) -> ReLU -> Linear(d, d_llm) -> ReLU ->
  LayerNorm(d_llm).
* :class:`AcousticAdapter` is a Q-Former over several encoder layers: each tapped layer has its own
  64 learned queries, ONE 2-layer BERT-style transformer (:class:`QFormerLayer`: self-attention,
  cross-attention to the tap, feed-forward, each followed by add & post-LayerNorm) is shared by all
  taps, a per-query softmax over taps mixes the results, then LayerNorm(d) -> Linear(d, d_llm).
  The taps are stacked into the batch dimension so the Q-Former runs once.

Parameter counts (d_llm = 4096): Whisper-small (d = 768, 12 heads, 4 taps) 14,369,280 semantic and
22,251,776 acoustic; Whisper-large-v3 (d = 1280, 20 heads, 8 taps) 36,392,448 and 47,892,992.

``convert_official_state_dict`` on each class maps the authors' released weights
(``semantic_connector.*`` / ``acoustic_connector.*`` with that prefix removed) onto these modules.

Example
-------
>>> taps = [torch.randn(2, 12, 16) for _ in range(3)]
>>> semantic, sem_lens = SemanticAdapter(16, 32)(taps[-1], torch.tensor([12, 9]))
>>> semantic.shape, sem_lens.tolist()
(torch.Size([2, 3, 32]), [3, 2])
>>> AcousticAdapter(16, 32, n_taps=3, n_heads=2, n_queries=5, ffn=24)(taps).shape
torch.Size([2, 5, 32])
"""

from __future__ import annotations

import re
from typing import Dict, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

# BERT's LayerNorm epsilon (the Q-Former is a BERT encoder with cross-attention).
BERT_LN_EPS = 1e-12


def rename_keys(
    state: Mapping[str, torch.Tensor], rules: Sequence[Tuple[str, str]], what: str
) -> Dict[str, torch.Tensor]:
    """Rename state-dict keys with the first matching ``(regex, replacement)`` rule.

    Arguments
    ---------
    state : mapping
        Source state dict.
    rules : sequence of (str, str)
        Full-match regular expressions and their ``re.sub`` replacements.
    what : str
        Name of the source, for the error message.

    Returns
    -------
    dict
        The renamed state dict.

    Example
    -------
    >>> rename_keys({"a.0.w": 1}, [(r"a\\.(\\d+)\\.w", r"b\\1")], "demo")
    {'b0': 1}
    """
    out = {}
    for key, value in state.items():
        for pattern, repl in rules:
            if re.fullmatch(pattern, key):
                out[re.sub(pattern, repl, key)] = value
                break
        else:
            raise ValueError(f"{what}: unknown key '{key}' (not an adapter weight of the authors' DIFFA checkpoints)")
    return out


class SemanticAdapter(nn.Module):
    """Conv x4 downsampling projector from encoder frames to LLM embeddings.

    Output token ``j`` reads frames ``4j - 2 .. 4j + 2``, so the first ``lens // 4`` tokens of an
    utterance never see its padding.

    Arguments
    ---------
    d_in : int
        Encoder width.
    d_llm : int
        LLM embedding width.

    Example
    -------
    >>> adapter = SemanticAdapter(8, 12)
    >>> emb, lens = adapter(torch.randn(3, 11, 8))
    >>> emb.shape, lens.tolist()
    (torch.Size([3, 2, 12]), [2, 2, 2])
    >>> sum(p.numel() for p in adapter.parameters())
    1396
    """

    rate = 4

    def __init__(self, d_in: int, d_llm: int):
        super().__init__()
        self.conv1 = nn.Conv1d(d_in, d_in, kernel_size=3, stride=1, padding=1)
        self.conv2 = nn.Conv1d(d_in, self.rate * d_in, kernel_size=3, stride=self.rate, padding=1)
        self.linear1 = nn.Linear(self.rate * d_in, d_in)
        self.linear2 = nn.Linear(d_in, d_llm)
        self.norm = nn.LayerNorm(d_llm)

    def forward(self, x: torch.Tensor, lens: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Downsample and project.

        Arguments
        ---------
        x : torch.Tensor
            Encoder output, (batch, time, d_in), time >= 4.
        lens : torch.Tensor, optional
            Valid frames per utterance, (batch,) long; default: all ``time`` frames.

        Returns
        -------
        emb : torch.Tensor
            (batch, time // 4, d_llm).
        out_lens : torch.Tensor
            ``lens // 4``, (batch,) long.
        """
        n = x.shape[1] // self.rate
        if n == 0:
            raise ValueError(f"SemanticAdapter: needs at least {self.rate} encoder frames, got {x.shape[1]}")
        h = x[:, : n * self.rate].transpose(1, 2).to(self.conv1.weight.dtype)
        # contiguous: a Linear on a transposed input takes a different matmul kernel for a trainable
        # weight than for a frozen one, so VRPO's policy and reference would differ by rounding
        h = self.conv2(F.gelu(self.conv1(h))).transpose(1, 2).contiguous()
        h = F.relu(self.linear2(F.relu(self.linear1(h))))
        if lens is None:
            lens = torch.full((x.shape[0],), x.shape[1], dtype=torch.long, device=x.device)
        return self.norm(h), lens // self.rate

    @staticmethod
    def convert_official_state_dict(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Map the authors' ``semantic_connector.*`` weights (prefix removed) onto this module.

        Arguments
        ---------
        state : mapping
            ``conv.0.*``, ``conv.2.*``, ``linear_connector.0.*``, ``linear_connector.2.*``,
            ``layernorm.*``.

        Returns
        -------
        dict
            A state dict for :class:`SemanticAdapter`.

        Example
        -------
        >>> sorted(SemanticAdapter.convert_official_state_dict({"conv.2.weight": 0, "layernorm.bias": 1}))
        ['conv2.weight', 'norm.bias']
        """
        rules = [
            (r"conv\.0\.(weight|bias)", r"conv1.\1"),
            (r"conv\.2\.(weight|bias)", r"conv2.\1"),
            (r"linear_connector\.0\.(weight|bias)", r"linear1.\1"),
            (r"linear_connector\.2\.(weight|bias)", r"linear2.\1"),
            (r"layernorm\.(weight|bias)", r"norm.\1"),
        ]
        return rename_keys(state, rules, "semantic_connector")


class MultiHeadAttention(nn.Module):
    """BERT-style multi-head attention (biased query/key/value/output projections).

    Arguments
    ---------
    d : int
        Model width (queries and memory).
    n_heads : int
        Attention heads; must divide ``d``.
    dropout : float
        Dropout on the attention probabilities (training only).

    Example
    -------
    >>> att = MultiHeadAttention(8, 2, 0.0)
    >>> att(torch.randn(3, 4, 8), torch.randn(3, 6, 8), torch.tensor([[True] * 6] * 3)).shape
    torch.Size([3, 4, 8])
    """

    def __init__(self, d: int, n_heads: int, dropout: float):
        super().__init__()
        if d % n_heads:
            raise ValueError(f"attention width {d} is not divisible by {n_heads} heads")
        self.n_heads, self.dropout = n_heads, dropout
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d)
        self.value = nn.Linear(d, d)
        self.out = nn.Linear(d, d)

    def forward(
        self, x: torch.Tensor, memory: torch.Tensor, memory_mask: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Attend from ``x`` (batch, L, d) to ``memory`` (batch, S, d).

        Arguments
        ---------
        x : torch.Tensor
            Queries, (batch, L, d).
        memory : torch.Tensor
            Keys and values, (batch, S, d).
        memory_mask : torch.Tensor, optional
            Bool (batch, S), True where a key may be attended; default: all.

        Returns
        -------
        torch.Tensor
            (batch, L, d).
        """
        B, L, D = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(B, t.shape[1], self.n_heads, D // self.n_heads).transpose(1, 2)

        mask = None if memory_mask is None else memory_mask[:, None, None, :]
        o = F.scaled_dot_product_attention(
            heads(self.query(x)), heads(self.key(memory)), heads(self.value(memory)),
            attn_mask=mask, dropout_p=self.dropout if self.training else 0.0,
        )
        return self.out(o.transpose(1, 2).reshape(B, L, D))


class QFormerLayer(nn.Module):
    """One BERT layer with cross-attention: self-attn, cross-attn, FFN, each add & post-LayerNorm.

    Arguments
    ---------
    d : int
        Width of queries and memory.
    n_heads : int
        Attention heads.
    ffn : int
        Feed-forward width (GELU).
    dropout : float
        Dropout on attention probabilities and on each sub-layer output.

    Example
    -------
    >>> layer = QFormerLayer(8, 2, 16, 0.1)
    >>> layer(torch.randn(2, 3, 8), torch.randn(2, 5, 8)).shape
    torch.Size([2, 3, 8])
    """

    def __init__(self, d: int, n_heads: int, ffn: int, dropout: float):
        super().__init__()
        self.self_attn = MultiHeadAttention(d, n_heads, dropout)
        self.self_norm = nn.LayerNorm(d, eps=BERT_LN_EPS)
        self.cross_attn = MultiHeadAttention(d, n_heads, dropout)
        self.cross_norm = nn.LayerNorm(d, eps=BERT_LN_EPS)
        self.ffn_in = nn.Linear(d, ffn)
        self.ffn_out = nn.Linear(ffn, d)
        self.ffn_norm = nn.LayerNorm(d, eps=BERT_LN_EPS)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, memory: torch.Tensor, memory_mask: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Update queries ``x`` (batch, L, d) from ``memory`` (batch, S, d).

        Arguments
        ---------
        x : torch.Tensor
            Queries, (batch, L, d).
        memory : torch.Tensor
            Encoder states, (batch, S, d).
        memory_mask : torch.Tensor, optional
            Bool (batch, S), True on frames that may be attended.

        Returns
        -------
        torch.Tensor
            (batch, L, d).
        """
        x = self.self_norm(x + self.dropout(self.self_attn(x, x)))
        x = self.cross_norm(x + self.dropout(self.cross_attn(x, memory, memory_mask)))
        return self.ffn_norm(x + self.dropout(self.ffn_out(F.gelu(self.ffn_in(x)))))


class AcousticAdapter(nn.Module):
    """Q-Former over tapped encoder layers, mixed per query by a softmax over taps.

    Arguments
    ---------
    d_in : int
        Encoder width (also the Q-Former width).
    d_llm : int
        LLM embedding width.
    n_taps : int
        Number of tapped encoder layers.
    n_heads : int
        Q-Former attention heads (the encoder's).
    n_queries : int
        Learned queries per tap (and output tokens).
    ffn : int
        Q-Former feed-forward width.
    n_layers : int
        Q-Former layers (shared by all taps).
    dropout : float
        Q-Former dropout.

    Example
    -------
    >>> adapter = AcousticAdapter(8, 12, n_taps=2, n_heads=2, n_queries=3, ffn=16).eval()
    >>> taps = [torch.randn(2, 5, 8), torch.randn(2, 5, 8)]
    >>> out = adapter(taps, torch.tensor([5, 3]))
    >>> out.shape
    torch.Size([2, 3, 12])
    >>> padded = [torch.cat([t, torch.randn(2, 4, 8)], dim=1) for t in taps]
    >>> torch.allclose(adapter(padded, torch.tensor([5, 3])), out, atol=1e-6)
    True
    """

    def __init__(
        self,
        d_in: int,
        d_llm: int,
        n_taps: int,
        n_heads: int,
        n_queries: int = 64,
        ffn: int = 3072,
        n_layers: int = 2,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(n_taps, n_queries, d_in))
        self.tap_weights = nn.Parameter(torch.zeros(n_queries, n_taps))
        self.layers = nn.ModuleList(QFormerLayer(d_in, n_heads, ffn, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_in)
        self.proj = nn.Linear(d_in, d_llm)

    @property
    def n_taps(self) -> int:
        """Number of tapped encoder layers."""
        return self.queries.shape[0]

    def forward(self, taps: Sequence[torch.Tensor], lens: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Summarise the tapped hidden states into ``n_queries`` LLM embeddings.

        Arguments
        ---------
        taps : sequence of torch.Tensor
            ``n_taps`` encoder hidden states, each (batch, time, d_in).
        lens : torch.Tensor, optional
            Valid frames per utterance, (batch,) long, each >= 1; the cross-attention ignores the
            rest. None attends to every frame (the authors' behaviour with 30-s padding).

        Returns
        -------
        torch.Tensor
            (batch, n_queries, d_llm).
        """
        if len(taps) != self.n_taps:
            raise ValueError(f"AcousticAdapter: expected {self.n_taps} tapped hidden states, got {len(taps)}")
        memory = torch.stack(list(taps), dim=1).to(self.queries.dtype)  # (B, N, T, d)
        B, N, T, D = memory.shape
        if D != self.queries.shape[-1]:
            raise ValueError(f"AcousticAdapter: hidden states have width {D}, expected {self.queries.shape[-1]}")
        memory = memory.reshape(B * N, T, D)
        mask = None
        if lens is not None:
            if lens.shape != (B,) or bool((lens < 1).any()):
                raise ValueError(f"AcousticAdapter: lens must be ({B},) with every entry >= 1, got {lens.tolist()}")
            mask = torch.arange(T, device=memory.device) < lens.to(memory.device)[:, None]
            mask = mask.repeat_interleave(N, dim=0)  # row b * N + n belongs to utterance b
        x = self.queries.unsqueeze(0).expand(B, -1, -1, -1).reshape(B * N, -1, D)
        for layer in self.layers:
            x = layer(x, memory, mask)
        weights = torch.softmax(self.tap_weights, dim=-1)  # (Q, N): per query, a distribution over taps
        mixed = torch.einsum("bnqd,qn->bqd", x.view(B, N, -1, D), weights)
        return self.proj(self.norm(mixed))

    @staticmethod
    def convert_official_state_dict(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Map the authors' ``acoustic_connector.*`` weights (prefix removed) onto this module.

        The authors keep one ``layer_prompts.{i}`` tensor (1, Q, d) per tap and a ``transformers``
        ``BertEncoder`` under ``qformer.``; here the prompts are one (n_taps, Q, d) tensor.

        Arguments
        ---------
        state : mapping
            ``layer_prompts.{i}``, ``layer_weights``, ``qformer.layer.{l}.(attention|crossattention|
            intermediate|output).*``, ``proj.0.*`` (LayerNorm), ``proj.1.*`` (Linear).

        Returns
        -------
        dict
            A state dict for :class:`AcousticAdapter`.

        Example
        -------
        >>> sd = {"layer_prompts.1": torch.ones(1, 2, 3), "layer_prompts.0": torch.zeros(1, 2, 3),
        ...       "qformer.layer.0.crossattention.output.LayerNorm.weight": torch.ones(3)}
        >>> out = AcousticAdapter.convert_official_state_dict(sd)
        >>> sorted(out), out["queries"][:, 0, 0].tolist()
        (['layers.0.cross_norm.weight', 'queries'], [0.0, 1.0])
        """
        prompt = re.compile(r"layer_prompts\.(\d+)")
        prompts = {int(prompt.fullmatch(k).group(1)): v for k, v in state.items() if prompt.fullmatch(k)}
        if sorted(prompts) != list(range(len(prompts))):
            raise ValueError(
                f"acoustic_connector: layer_prompts indices {sorted(prompts)} are not 0..{len(prompts) - 1}"
            )
        layer = r"qformer\.layer\.(\d+)\."
        rules = [
            (r"layer_weights", "tap_weights"),
            (layer + r"attention\.self\.(query|key|value)\.(weight|bias)", r"layers.\1.self_attn.\2.\3"),
            (layer + r"attention\.output\.dense\.(weight|bias)", r"layers.\1.self_attn.out.\2"),
            (layer + r"attention\.output\.LayerNorm\.(weight|bias)", r"layers.\1.self_norm.\2"),
            (layer + r"crossattention\.self\.(query|key|value)\.(weight|bias)", r"layers.\1.cross_attn.\2.\3"),
            (layer + r"crossattention\.output\.dense\.(weight|bias)", r"layers.\1.cross_attn.out.\2"),
            (layer + r"crossattention\.output\.LayerNorm\.(weight|bias)", r"layers.\1.cross_norm.\2"),
            (layer + r"intermediate\.dense\.(weight|bias)", r"layers.\1.ffn_in.\2"),
            (layer + r"output\.dense\.(weight|bias)", r"layers.\1.ffn_out.\2"),
            (layer + r"output\.LayerNorm\.(weight|bias)", r"layers.\1.ffn_norm.\2"),
            (r"proj\.0\.(weight|bias)", r"norm.\1"),
            (r"proj\.1\.(weight|bias)", r"proj.\1"),
        ]
        out = rename_keys({k: v for k, v in state.items() if not prompt.fullmatch(k)}, rules, "acoustic_connector")
        if prompts:
            out["queries"] = torch.cat([prompts[i] for i in range(len(prompts))], dim=0)
        return out
