"""Tests for diffa.data.corpora.mcq: prompts, gold resolution, labels."""
import pytest

from diffa.data.corpora.mcq import choice_list_instruction, gold_index, lettered, mmsu_instruction, scalar_labels


def test_gold_index_prefers_exact_matches():
    choices = ["yes", "Yes ", "YES"]
    assert gold_index("YES", choices) == 2
    assert gold_index("Yes", choices) == 1
    assert gold_index("  yes", choices) == 0
    assert gold_index("no", choices) is None


def test_prompts_letter_the_choices():
    assert lettered(["a", "b", "c"]) == "A. a\nB. b\nC. c"
    with pytest.raises(ValueError, match="at most 26 choices"):
        lettered([str(i) for i in range(27)])
    assert mmsu_instruction("Q?", ["x", "y"]).endswith("content.\n\nQuestion: Q?\n\nA. x\nB. y")
    assert choice_list_instruction("Q?", ["x", "y"]).endswith("style.\n\nQuestion: Q?\n\nChoices:\nA. x\nB. y\nAnswer:")


def test_scalar_labels_keep_order_and_stringify():
    fields = {"b": 2.5, "a": "x", "c": None, "d": {"k": 1}, "e": True}
    assert list(scalar_labels(fields, ["e", "a", "b", "c", "d", "missing"]).items()) == [
        ("e", "True"), ("a", "x"), ("b", "2.5")]
