"""Tests of diffa.scoring.wer_files: icefall-style errs, recogs and summary files."""
from diffa.scoring.wer import score_wer
from diffa.scoring.wer_files import word_stats, write_errs, write_recogs, write_wer_summary


def test_hand_checked_errs_file(tmp_path):
    result = score_wer({"u1": "the cat sat on the mat"}, {"u1": "the hat sat on mat too"}, "wenet")
    path = tmp_path / "errs-test-wenet.txt"
    write_errs(str(path), result)
    text = path.read_text()
    assert text.startswith("%WER = 50.00\nErrors: 1 insertions, 1 deletions, 1 substitutions, "
                           "over 6 reference words (4 correct)\n")
    assert "u1:\tTHE (CAT->HAT) SAT ON (THE->*) MAT (*->TOO)\n" in text
    assert "SUBSTITUTIONS: count ref -> hyp\n1   CAT -> HAT\n" in text
    assert "DELETIONS: count ref\n1   THE\n" in text
    assert "INSERTIONS: count hyp\n1   TOO\n" in text
    per_word = text.split("PER-WORD STATS: word  corr tot_errs count_in_ref count_in_hyp\n")[1].splitlines()
    # word corr tot_errs count_in_ref count_in_hyp, most errors first then alphabetical
    assert per_word == ["CAT   0 1 1 0", "HAT   0 1 0 1", "THE   1 1 2 1", "TOO   0 1 0 1",
                        "MAT   1 0 1 1", "ON   1 0 1 1", "SAT   1 0 1 1"]


def test_word_stats_counts_both_sides_of_a_substitution():
    stats = word_stats([[("a", "b"), ("a", "a"), (None, "b"), ("c", None)]])
    assert (stats["a"].corr, stats["a"].ref_sub, stats["a"].in_ref, stats["a"].in_hyp) == (1, 1, 2, 1)
    assert (stats["b"].hyp_sub, stats["b"].ins, stats["b"].errors, stats["b"].in_hyp) == (1, 1, 2, 2)
    assert stats["c"].dele == 1


def test_recogs_and_summary_files(tmp_path):
    refs, hyps = {"u2": "B C", "u1": "A"}, {"u1": "a", "u2": None}
    write_recogs(str(tmp_path / "recogs.txt"), refs, hyps)
    assert (tmp_path / "recogs.txt").read_text() == (
        "u1:\tref=['A']\nu1:\thyp=['a']\nu2:\tref=['B', 'C']\nu2:\thyp=<invalid: None>\n")
    results = [score_wer(refs, hyps, style, unit) for style in ("wenet", "whisper_basic") for unit in ("word", "char")]
    write_wer_summary(str(tmp_path / "summary.txt"), results)
    assert (tmp_path / "summary.txt").read_text() == (
        "settings\tWER\tCER\nwenet\t66.67\t66.67\nwhisper_basic\t66.67\t66.67\n")
