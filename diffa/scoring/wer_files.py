"""icefall-style WER result files of a scored set, from :mod:`diffa.scoring.wer`'s alignments.

Each is written to a temporary name and renamed:

``recogs-<set>.txt``
    Two lines per utterance, sorted by id: ``<id>:\\tref=[...]`` and ``<id>:\\thyp=[...]``, the
    raw (un-normalised) texts split on whitespace.
``errs-<set>-<style>.txt``
    ``%WER = 2.50`` (or ``%CER``), a line of error counts, then the sections ``PER-UTT DETAILS``
    (each utterance's alignment: a correct word as itself, an error as ``(ref->hyp)`` with ``*``
    for the missing side), ``SUBSTITUTIONS`` (``count ref -> hyp``), ``DELETIONS`` (``count
    ref``), ``INSERTIONS`` (``count hyp``) and ``PER-WORD STATS`` (``word corr tot_errs
    count_in_ref count_in_hyp``, most errors first).
``wer-summary-<set>.txt``
    ``settings\\tWER\\tCER`` then one line per style.

Example
-------
>>> from diffa.scoring.wer import score_wer
>>> result = score_wer({"u1": "the cat sat on the mat"}, {"u1": "the hat sat on mat too"}, "wenet")
>>> format_alignment(result.alignments["u1"])
'THE (CAT->HAT) SAT ON (THE->*) MAT (*->TOO)'
"""

from collections import Counter
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Sequence

from diffa.files import atomic_write
from diffa.scoring.wer import Pair, WerResult

GAP = "*"
"""How a missing side of an aligned pair is written in the errs file."""


def format_alignment(pairs: Sequence[Pair]) -> str:
    """One line of an errs file: correct tokens as themselves, errors as ``(ref->hyp)``.

    Arguments
    ---------
    pairs : sequence of pairs
        An alignment from :func:`diffa.scoring.wer.align`.

    Returns
    -------
    str

    Example
    -------
    >>> format_alignment([("a", "a"), ("b", None), (None, "c"), ("d", "e")])
    'a (b->*) (*->c) (d->e)'
    """
    return " ".join(r if r == h else f"({GAP if r is None else r}->{GAP if h is None else h})"
                    for r, h in pairs)


@dataclass
class WordStats:
    """How often one token was right and wrong, over a set (one row of PER-WORD STATS).

    Example
    -------
    >>> stats = word_stats([[("a", "a"), ("a", "b"), (None, "a")]])
    >>> stats["a"], stats["a"].errors, stats["a"].in_ref, stats["a"].in_hyp
    (WordStats(corr=1, ref_sub=1, hyp_sub=0, ins=1, dele=0), 2, 2, 2)
    """

    corr: int = 0
    ref_sub: int = 0
    hyp_sub: int = 0
    ins: int = 0
    dele: int = 0

    @property
    def errors(self) -> int:
        """Substituted away + substituted in + inserted + deleted."""
        return self.ref_sub + self.hyp_sub + self.ins + self.dele

    @property
    def in_ref(self) -> int:
        """Occurrences in the references."""
        return self.corr + self.ref_sub + self.dele

    @property
    def in_hyp(self) -> int:
        """Occurrences in the hypotheses."""
        return self.corr + self.hyp_sub + self.ins


def word_stats(alignments: Iterable[Sequence[Pair]]) -> Dict[str, WordStats]:
    """Per-token counts over many alignments.

    Arguments
    ---------
    alignments : iterable of alignments
        From :func:`diffa.scoring.wer.align`.

    Returns
    -------
    dict of str to WordStats

    Example
    -------
    >>> word_stats([[("x", None)]])["x"].dele
    1
    """
    stats: Dict[str, WordStats] = {}

    def of(token: str) -> WordStats:
        return stats.setdefault(token, WordStats())

    for pairs in alignments:
        for r, h in pairs:
            if r is None:
                of(h).ins += 1
            elif h is None:
                of(r).dele += 1
            elif r == h:
                of(r).corr += 1
            else:
                of(r).ref_sub += 1
                of(h).hyp_sub += 1
    return stats


def _counted_lines(counter: Counter) -> List[str]:
    """``count  item`` lines, most frequent first (ties in item order)."""
    return [f"{count}   {item}" for item, count in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))]


def write_errs(path: str, result: WerResult) -> None:
    """Write an icefall-style ``errs-<set>-<style>.txt`` (format in the module docstring).

    Arguments
    ---------
    path : str
        Output file.
    result : WerResult
        From :func:`diffa.scoring.wer.score_wer`.

    Example
    -------
    >>> import os, tempfile
    >>> from diffa.scoring.wer import score_wer
    >>> path = os.path.join(tempfile.mkdtemp(), "errs-t-wenet.txt")
    >>> write_errs(path, score_wer({"u": "a b c"}, {"u": "a x"}, "wenet"))
    >>> print(open(path).read(), end="")  # doctest: +NORMALIZE_WHITESPACE
    %WER = 66.67
    Errors: 0 insertions, 1 deletions, 1 substitutions, over 3 reference words (1 correct)
    Search below for sections starting with PER-UTT DETAILS:, SUBSTITUTIONS:, DELETIONS:, INSERTIONS:, PER-WORD STATS:
    <BLANKLINE>
    PER-UTT DETAILS: corr or (ref->hyp)
    u:  A (B->X) (C->*)
    <BLANKLINE>
    SUBSTITUTIONS: count ref -> hyp
    1   B -> X
    <BLANKLINE>
    DELETIONS: count ref
    1   C
    <BLANKLINE>
    INSERTIONS: count hyp
    <BLANKLINE>
    PER-WORD STATS: word  corr tot_errs count_in_ref count_in_hyp
    B   0 1 1 0
    C   0 1 1 0
    X   0 1 0 1
    A   1 0 1 1
    """
    counts = result.counts
    unit = "words" if result.unit == "word" else "characters"
    rate = "n/a (no reference units)" if counts.rate is None else f"{counts.rate:.2f}"
    subs: Counter = Counter()
    dels: Counter = Counter()
    ins: Counter = Counter()
    for pairs in result.alignments.values():
        for r, h in pairs:
            if r is None:
                ins[h] += 1
            elif h is None:
                dels[r] += 1
            elif r != h:
                subs[f"{r} -> {h}"] += 1
    stats = word_stats(result.alignments.values())
    lines = [
        f"%{result.metric} = {rate}",
        f"Errors: {counts.ins} insertions, {counts.dele} deletions, {counts.sub} substitutions, "
        f"over {counts.ref} reference {unit} ({counts.corr} correct)",
        "Search below for sections starting with PER-UTT DETAILS:, SUBSTITUTIONS:, DELETIONS:, "
        "INSERTIONS:, PER-WORD STATS:",
        "",
        "PER-UTT DETAILS: corr or (ref->hyp)",
        *(f"{utt}:\t{format_alignment(pairs)}" for utt, pairs in result.alignments.items()),
        "",
        "SUBSTITUTIONS: count ref -> hyp",
        *_counted_lines(subs),
        "",
        "DELETIONS: count ref",
        *_counted_lines(dels),
        "",
        "INSERTIONS: count hyp",
        *_counted_lines(ins),
        "",
        "PER-WORD STATS: word  corr tot_errs count_in_ref count_in_hyp",
        *(f"{word}   {s.corr} {s.errors} {s.in_ref} {s.in_hyp}"
          for word, s in sorted(stats.items(), key=lambda kv: (-kv[1].errors, kv[0]))),
    ]
    with atomic_write(path) as f:
        f.write("\n".join(lines) + "\n")


def write_recogs(path: str, refs: Mapping[str, str], hyps: Mapping[str, object]) -> None:
    """Write an icefall-style ``recogs-<set>.txt``: raw reference and hypothesis words by id.

    Arguments
    ---------
    path : str
        Output file.
    refs : mapping of str to str
        Reference transcripts by id (the ids written, sorted).
    hyps : mapping of str to object
        Hypotheses by id; a value that is not a string is written as ``hyp=<invalid: repr>``.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "recogs-t.txt")
    >>> write_recogs(path, {"u": "A B"}, {"u": "a b."})
    >>> print(open(path).read(), end="")
    u:	ref=['A', 'B']
    u:	hyp=['a', 'b.']
    """
    lines = []
    for utt in sorted(refs):
        hyp = hyps.get(utt)
        shown = hyp.split() if isinstance(hyp, str) else f"<invalid: {hyp!r}>"
        lines += [f"{utt}:\tref={refs[utt].split()}", f"{utt}:\thyp={shown}"]
    with atomic_write(path) as f:
        f.write("".join(line + "\n" for line in lines))


def write_wer_summary(path: str, results: Sequence[WerResult]) -> None:
    """Write ``wer-summary-<set>.txt``: one line per style with its WER and CER.

    Arguments
    ---------
    path : str
        Output file.
    results : sequence of WerResult
        Word and/or character results; a style without one of them shows ``-``.

    Example
    -------
    >>> import os, tempfile
    >>> from diffa.scoring.wer import score_wer
    >>> path = os.path.join(tempfile.mkdtemp(), "wer-summary-t.txt")
    >>> refs, hyps = {"u": "ab cd"}, {"u": "ab ce"}
    >>> write_wer_summary(path, [score_wer(refs, hyps, "wenet"), score_wer(refs, hyps, "wenet", "char")])
    >>> print(open(path).read(), end="")
    settings	WER	CER
    wenet	50.00	25.00
    """
    table: Dict[str, Dict[str, str]] = {}
    for result in results:
        rate = result.counts.rate
        table.setdefault(result.style, {})[result.metric] = "-" if rate is None else f"{rate:.2f}"
    lines = ["settings\tWER\tCER"]
    lines += [f"{style}\t{cells.get('WER', '-')}\t{cells.get('CER', '-')}" for style, cells in table.items()]
    with atomic_write(path) as f:
        f.write("".join(line + "\n" for line in lines))
