"""Word and character error rates with per-utterance alignments (their files: :mod:`diffa.scoring.wer_files`).

:func:`align` finds a minimum edit-distance alignment (substitution, deletion and insertion all
cost 1) with a Levenshtein dynamic programme whose rows are computed with NumPy: the deletion and
substitution candidates of a row are elementwise minima, and the insertion chain is a running
minimum (``row[j] = j + min_{k<=j}(cand[k] - k)``), so a reference of n tokens costs n vector
operations. :func:`align_many` runs that programme on padded batches of utterances of similar
length at once (a few thousand utterances take a few hundred vector operations). Among
alignments of equal cost the traceback prefers, from the end of the utterance, a deletion, then
an insertion, then a match or substitution: the choice WeNet's ``compute-wer.py`` makes, so its
S/D/I split is reproduced as well as its total.

:func:`score_wer` scores a set of utterances in one normalisation style (see
:mod:`diffa.scoring.text`) and unit (``"word"`` for WER, ``"char"`` for CER). A hypothesis that is
not a string, or is empty after stripping, is scored as the empty hypothesis (every reference unit
deleted) and its id is listed in ``WerResult.invalid_hypotheses``.

Example
-------
>>> result = score_wer({"u1": "the cat sat on the mat"}, {"u1": "the hat sat on mat too"}, "wenet")
>>> c = result.counts
>>> (c.ref, c.corr, c.sub, c.dele, c.ins, round(c.rate, 2))
(6, 4, 1, 1, 1, 50.0)
>>> result.alignments["u1"][:2]
[('THE', 'THE'), ('CAT', 'HAT')]
"""

from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from diffa.scoring.text import tokenize

Pair = Tuple[Optional[str], Optional[str]]
"""One aligned position: (reference token or None for an insertion, hypothesis token or None for
a deletion)."""


MAX_CELLS = 1 << 22
"""Most DP cells (utterances x (n + 1) x (m + 1)) one batch of :func:`align_many` holds."""


def edit_distance_matrices(refs: Sequence[Sequence[str]], hyps: Sequence[Sequence[str]]) -> np.ndarray:
    """Levenshtein cost matrices of a batch of token-sequence pairs, computed together.

    The sequences are padded to the longest reference (n) and hypothesis (m) with ids that match
    nothing; entry [b, i, j] with ``i <= len(refs[b])`` and ``j <= len(hyps[b])`` only depends on
    real tokens, so each utterance's matrix is its top-left corner.

    Arguments
    ---------
    refs : sequence of sequences of str
        Reference tokens per utterance.
    hyps : sequence of sequences of str
        Hypothesis tokens per utterance (same length as ``refs``).

    Returns
    -------
    numpy.ndarray
        (batch, n + 1, m + 1) int32: entry [b, i, j] is the edit distance between
        ``refs[b][:i]`` and ``hyps[b][:j]``.

    Example
    -------
    >>> d = edit_distance_matrices([["a", "b", "c"], ["x"]], [["a", "c", "d"], []])
    >>> int(d[0, 3, 3]), int(d[1, 1, 0])
    (2, 1)
    """
    vocab: Dict[str, int] = {}
    n = max((len(r) for r in refs), default=0)
    m = max((len(h) for h in hyps), default=0)
    ref_ids = np.full((len(refs), n), -1, dtype=np.int32)
    hyp_ids = np.full((len(hyps), m), -2, dtype=np.int32)
    for b, (ref, hyp) in enumerate(zip(refs, hyps)):
        ref_ids[b, :len(ref)] = [vocab.setdefault(t, len(vocab)) for t in ref]
        hyp_ids[b, :len(hyp)] = [vocab.setdefault(t, len(vocab)) for t in hyp]
    steps = np.arange(m + 1, dtype=np.int32)
    dist = np.empty((len(refs), n + 1, m + 1), dtype=np.int32)
    dist[:, 0] = steps
    cand = np.empty((len(refs), m + 1), dtype=np.int32)
    for i in range(1, n + 1):
        prev = dist[:, i - 1]
        cand[:, 0] = i
        np.minimum(prev[:, 1:] + 1, prev[:, :-1] + (hyp_ids != ref_ids[:, i - 1:i]), out=cand[:, 1:])
        dist[:, i] = steps + np.minimum.accumulate(cand - steps, axis=1)
    return dist


def _traceback(ref: Sequence[str], hyp: Sequence[str], dist: np.ndarray) -> List[Pair]:
    """Walk back from the end: deletion, else insertion, else match/substitution (WeNet's ties)."""
    pairs: List[Pair] = []
    i, j = len(ref), len(hyp)
    while i > 0 or j > 0:
        here = dist[i, j]
        if i > 0 and dist[i - 1, j] + 1 == here:
            i -= 1
            pairs.append((ref[i], None))
        elif j > 0 and dist[i, j - 1] + 1 == here:
            j -= 1
            pairs.append((None, hyp[j]))
        else:
            i, j = i - 1, j - 1
            pairs.append((ref[i], hyp[j]))
    pairs.reverse()
    return pairs


def align_many(refs: Sequence[Sequence[str]], hyps: Sequence[Sequence[str]],
               max_cells: int = MAX_CELLS) -> List[List[Pair]]:
    """Minimum edit-distance alignments of many utterances.

    Utterances are sorted by length and cut into batches of at most ``max_cells`` DP cells;
    each batch is one :func:`edit_distance_matrices` call, then each utterance is traced back.

    Arguments
    ---------
    refs : sequence of sequences of str
        Reference tokens per utterance.
    hyps : sequence of sequences of str
        Hypothesis tokens per utterance.
    max_cells : int
        Memory bound of one batch (int32 cells).

    Returns
    -------
    list of alignments
        In input order (see :func:`align`).

    Example
    -------
    >>> align_many([["a", "b"], ["c"]], [["a"], ["d", "c"]])
    [[('a', 'a'), ('b', None)], [(None, 'd'), ('c', 'c')]]
    """
    if len(refs) != len(hyps):
        raise ValueError(f"align_many: {len(refs)} references but {len(hyps)} hypotheses")
    order = sorted(range(len(refs)), key=lambda k: (len(refs[k]), len(hyps[k])))
    alignments: List[List[Pair]] = [[] for _ in refs]
    start = 0
    while start < len(order):
        stop, n, m = start, 0, 0
        while stop < len(order):
            k = order[stop]
            grown_n, grown_m = max(n, len(refs[k])), max(m, len(hyps[k]))
            if stop > start and (stop - start + 1) * (grown_n + 1) * (grown_m + 1) > max_cells:
                break
            n, m, stop = grown_n, grown_m, stop + 1
        batch = order[start:stop]
        dist = edit_distance_matrices([refs[k] for k in batch], [hyps[k] for k in batch])
        for b, k in enumerate(batch):
            alignments[k] = _traceback(refs[k], hyps[k], dist[b])
        start = stop
    return alignments


def edit_distance_matrix(ref: Sequence[str], hyp: Sequence[str]) -> np.ndarray:
    """The Levenshtein cost matrix between two token sequences.

    Arguments
    ---------
    ref : sequence of str
        Reference tokens (n).
    hyp : sequence of str
        Hypothesis tokens (m).

    Returns
    -------
    numpy.ndarray
        (n + 1, m + 1) int32: entry [i, j] is the edit distance between ``ref[:i]`` and
        ``hyp[:j]``; the distance of the whole sequences is the last entry.

    Example
    -------
    >>> int(edit_distance_matrix(["a", "b", "c"], ["a", "c", "d"])[-1, -1])
    2
    >>> edit_distance_matrix([], ["x", "y"]).tolist()
    [[0, 1, 2]]
    """
    return edit_distance_matrices([ref], [hyp])[0]


def align(ref: Sequence[str], hyp: Sequence[str]) -> List[Pair]:
    """A minimum edit-distance alignment of two token sequences.

    Arguments
    ---------
    ref : sequence of str
        Reference tokens.
    hyp : sequence of str
        Hypothesis tokens.

    Returns
    -------
    list of (str or None, str or None)
        Aligned pairs in order: ``(r, r)`` a match, ``(r, h)`` a substitution, ``(r, None)`` a
        deletion, ``(None, h)`` an insertion. Ties are broken as WeNet's compute-wer does (see
        the module docstring).

    Example
    -------
    >>> align(["a", "b", "c"], ["a", "x", "c", "d"])
    [('a', 'a'), ('b', 'x'), ('c', 'c'), (None, 'd')]
    >>> align(["the", "the"], ["the"])
    [('the', 'the'), ('the', None)]
    """
    return _traceback(ref, hyp, edit_distance_matrix(ref, hyp))


@dataclass
class ErrorCounts:
    """Error counts of one utterance or a whole set.

    Arguments
    ---------
    ref : int
        Reference units (the denominator).
    corr, sub, dele, ins : int
        Correct units, substitutions, deletions and insertions.

    Example
    -------
    >>> c = ErrorCounts.from_alignment([("a", "a"), ("b", "x"), (None, "y")])
    >>> c, c.errors, round(c.rate, 1)
    (ErrorCounts(ref=2, corr=1, sub=1, dele=0, ins=1), 2, 100.0)
    >>> (c + c).ref, ErrorCounts().rate is None
    (4, True)
    """

    ref: int = 0
    corr: int = 0
    sub: int = 0
    dele: int = 0
    ins: int = 0

    @classmethod
    def from_alignment(cls, pairs: Iterable[Pair]) -> "ErrorCounts":
        """Count the matches and errors of an alignment (see :func:`align`)."""
        counts = cls()
        for r, h in pairs:
            if r is None:
                counts.ins += 1
                continue
            counts.ref += 1
            if h is None:
                counts.dele += 1
            elif h == r:
                counts.corr += 1
            else:
                counts.sub += 1
        return counts

    def __add__(self, other: "ErrorCounts") -> "ErrorCounts":
        return ErrorCounts(self.ref + other.ref, self.corr + other.corr, self.sub + other.sub,
                           self.dele + other.dele, self.ins + other.ins)

    @property
    def errors(self) -> int:
        """Substitutions + deletions + insertions."""
        return self.sub + self.dele + self.ins

    @property
    def rate(self) -> Optional[float]:
        """Error rate in percent, ``100 * errors / ref``; None when there is no reference unit."""
        return 100.0 * self.errors / self.ref if self.ref else None

    def to_dict(self) -> Dict[str, object]:
        """The counts and the rate as a JSON-ready dict."""
        return {"rate": self.rate, "errors": self.errors, "ref": self.ref, "corr": self.corr,
                "sub": self.sub, "del": self.dele, "ins": self.ins}


@dataclass
class WerResult:
    """Everything :func:`score_wer` found for one style and unit.

    Arguments
    ---------
    style : str
        The normalisation style.
    unit : str
        ``"word"`` (WER) or ``"char"`` (CER).
    alignments : dict of str to list of pairs
        Each utterance's alignment, by id, in sorted id order.
    utt_counts : dict of str to ErrorCounts
        Each utterance's counts.
    counts : ErrorCounts
        The totals.
    invalid_hypotheses : list of str
        Ids whose hypothesis was not a string or was empty (scored as empty).

    Example
    -------
    >>> r = score_wer({"a": "x y"}, {"a": None}, "wenet", unit="char")
    >>> r.metric, r.counts.dele, r.invalid_hypotheses
    ('CER', 2, ['a'])
    """

    style: str
    unit: str
    alignments: Dict[str, List[Pair]]
    utt_counts: Dict[str, ErrorCounts]
    counts: ErrorCounts
    invalid_hypotheses: List[str] = field(default_factory=list)

    @property
    def metric(self) -> str:
        """``"WER"`` or ``"CER"``."""
        return "WER" if self.unit == "word" else "CER"

    def subset(self, ids: Iterable[str]) -> ErrorCounts:
        """The summed counts of some utterances (e.g. one label value)."""
        total = ErrorCounts()
        for utt in ids:
            total = total + self.utt_counts[utt]
        return total


def score_wer(refs: Mapping[str, str], hyps: Mapping[str, object], style: str = "wenet",
              unit: str = "word") -> WerResult:
    """Align and count errors for every utterance of ``refs``.

    Arguments
    ---------
    refs : mapping of str to str
        Reference transcripts by utterance id.
    hyps : mapping of str to object
        Hypotheses by id; every id of ``refs`` must be present. Values that are not strings, or
        are empty after stripping, are scored as the empty hypothesis and listed.
    style : str
        Normalisation style (:data:`diffa.scoring.text.STYLES`).
    unit : str
        ``"word"`` or ``"char"``.

    Returns
    -------
    WerResult

    Example
    -------
    >>> r = score_wer({"u1": "Hello world.", "u2": "good bye"}, {"u1": "hello, world", "u2": ""},
    ...               style="whisper_english")
    >>> r.counts.to_dict()
    {'rate': 50.0, 'errors': 2, 'ref': 4, 'corr': 2, 'sub': 0, 'del': 2, 'ins': 0}
    >>> r.invalid_hypotheses
    ['u2']
    """
    missing = [utt for utt in refs if utt not in hyps]
    if missing:
        raise ValueError(f"score_wer: {len(missing)} reference ids have no hypothesis, "
                         f"e.g. {missing[:3]}; pass a hypothesis (possibly '') for every id")
    ids = sorted(refs)
    invalid = [utt for utt in ids if not isinstance(hyps[utt], str) or not hyps[utt].strip()]
    bad = set(invalid)
    ref_units = [tokenize(refs[utt], style, unit) for utt in ids]
    hyp_units = [[] if utt in bad else tokenize(hyps[utt], style, unit) for utt in ids]
    alignments = dict(zip(ids, align_many(ref_units, hyp_units)))
    utt_counts = {utt: ErrorCounts.from_alignment(pairs) for utt, pairs in alignments.items()}
    total = sum(utt_counts.values(), ErrorCounts())
    return WerResult(style, unit, alignments, utt_counts, total, invalid)
