"""Tests of diffa.scoring.wer: alignments and error counts."""
import random

import pytest

from diffa.scoring.wer import ErrorCounts, align, align_many, edit_distance_matrix, score_wer


def wenet_alignment(ref, hyp):
    """The alignment WeNet's compute-wer picks: each cell stores its first strictly-best move in
    the order deletion, insertion, match/substitution; the traceback follows the stored moves."""
    n, m = len(ref), len(hyp)
    dist = [[0] * (m + 1) for _ in range(n + 1)]
    move = [[None] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        for j in range(m + 1):
            if i == 0 and j == 0:
                continue
            if i == 0:
                dist[i][j], move[i][j] = j, "ins"
                continue
            if j == 0:
                dist[i][j], move[i][j] = i, "del"
                continue
            best, what = dist[i - 1][j] + 1, "del"
            if dist[i][j - 1] + 1 < best:
                best, what = dist[i][j - 1] + 1, "ins"
            diag = dist[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1])
            if diag < best:
                best, what = diag, "diag"
            dist[i][j], move[i][j] = best, what
    pairs, i, j = [], n, m
    while i or j:
        if move[i][j] == "del":
            i -= 1
            pairs.append((ref[i], None))
        elif move[i][j] == "ins":
            j -= 1
            pairs.append((None, hyp[j]))
        else:
            i, j = i - 1, j - 1
            pairs.append((ref[i], hyp[j]))
    return pairs[::-1], dist[n][m]


def test_hand_checked_example():
    # ref: the cat sat on the mat ; hyp: the hat sat on mat too
    # by hand: THE ok, CAT->HAT sub, SAT ok, ON ok, THE deleted, MAT ok, TOO inserted
    result = score_wer({"u1": "the cat sat on the mat"}, {"u1": "the hat sat on mat too"}, "wenet")
    c = result.counts
    assert (c.ref, c.corr, c.sub, c.dele, c.ins, c.errors) == (6, 4, 1, 1, 1, 3)
    assert c.rate == pytest.approx(50.0)
    assert result.alignments["u1"] == [("THE", "THE"), ("CAT", "HAT"), ("SAT", "SAT"), ("ON", "ON"),
                                       ("THE", None), ("MAT", "MAT"), (None, "TOO")]


def test_distance_and_alignment_match_reference_dp():
    rng = random.Random(1)
    for _ in range(1500):
        ref = [rng.choice("abcd") for _ in range(rng.randint(0, 9))]
        hyp = [rng.choice("abcd") for _ in range(rng.randint(0, 9))]
        expected_pairs, expected_distance = wenet_alignment(ref, hyp)
        assert int(edit_distance_matrix(ref, hyp)[-1, -1]) == expected_distance
        assert align(ref, hyp) == expected_pairs, (ref, hyp)


@pytest.mark.parametrize("max_cells", [1, 200, 1 << 22])
def test_batched_alignments_equal_single_ones(max_cells):
    # padding must not leak into any utterance's corner of the batched matrices
    rng = random.Random(2)
    refs = [[rng.choice("abcde") for _ in range(rng.randint(0, 15))] for _ in range(120)]
    hyps = [[rng.choice("abcde") for _ in range(rng.randint(0, 20))] for _ in range(120)]
    assert align_many(refs, hyps, max_cells=max_cells) == [wenet_alignment(r, h)[0] for r, h in zip(refs, hyps)]


def test_invalid_and_empty_hypotheses_are_all_deletions():
    refs = {"a": "one two", "b": "three", "c": "four five six", "d": "ok"}
    hyps = {"a": None, "b": 7, "c": "   ", "d": "ok"}
    result = score_wer(refs, hyps, "wenet")
    assert result.invalid_hypotheses == ["a", "b", "c"]
    assert (result.counts.ref, result.counts.dele, result.counts.corr) == (7, 6, 1)
    assert result.utt_counts["b"] == ErrorCounts(ref=1, dele=1)


def test_missing_hypothesis_is_an_error():
    with pytest.raises(ValueError, match=r"1 reference ids have no hypothesis, e.g. \['b'\]"):
        score_wer({"a": "x", "b": "y"}, {"a": "x"})


def test_empty_reference_counts_insertions_and_has_no_rate():
    result = score_wer({"n": "<nospeech>"}, {"n": "hello there"}, "wenet")
    assert (result.counts.ref, result.counts.ins, result.counts.rate) == (0, 2, None)
    assert result.counts.to_dict()["rate"] is None


def test_styles_change_the_count():
    refs, hyps = {"u": "MISTER SMITH PAID TWENTY FIVE DOLLARS"}, {"u": "Mr. Smith paid $25."}
    assert score_wer(refs, hyps, "wenet").counts.errors == 4  # MR.->MISTER, $25.->TWENTY, FIVE and DOLLARS deleted
    assert score_wer(refs, hyps, "whisper_english").counts.errors == 0


def test_cer_counts_characters():
    result = score_wer({"u": "abc de"}, {"u": "abd de f"}, "wenet", unit="char")
    assert result.metric == "CER"
    assert (result.counts.ref, result.counts.sub, result.counts.ins) == (5, 1, 1)


def test_subset_sums_utterances():
    result = score_wer({"a": "x y", "b": "z"}, {"a": "x", "b": "w"}, "wenet")
    assert result.subset(["a", "b"]) == result.counts
    assert result.subset(["b"]) == ErrorCounts(ref=1, sub=1)
