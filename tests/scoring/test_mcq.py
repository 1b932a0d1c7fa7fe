"""Tests of diffa.scoring.mcq: the MMSU letter rule, the MMAU/MMAR token rule, letter mapping,
open-question matching, and accuracies with both MMSU denominators."""
import pytest

from diffa.scoring.mcq import Verdict, judge, map_letter, mmau_match, mmsu_letter, open_match, summarize

# A record in the released MMSU layout (question/mmsu.jsonl) ...
MMSU_ITEM = {"id": "stress_12", "task_name": "word_stress", "audio_path": "audio/stress_12.wav",
             "question": "Which word is stressed?", "choice_a": "he", "choice_b": "saw",
             "choice_c": "the", "choice_d": "dog", "answer_gt": "saw", "category": "Phonology",
             "sub-category": "Perception", "sub-sub-category": "Prosody"}
MMSU_CHOICES = [MMSU_ITEM[k] for k in ("choice_a", "choice_b", "choice_c", "choice_d")]
MMSU_GOLD = MMSU_CHOICES.index(MMSU_ITEM["answer_gt"])
# ... and in MMAU's (mmau-test-mini.json).
MMAU_ITEM = {"id": "3c5e", "audio_id": "./test-mini-audios/3c5e.wav",
             "question": "What is the source of the sound?",
             "choices": ["A dog barking", "A man speaking", "Rain on a roof", "A car horn"],
             "answer": "A dog barking", "dataset": "clotho", "task": "sound", "split": "test-mini",
             "category": "Sound", "sub-category": "Source identification", "difficulty": "easy"}


@pytest.mark.parametrize("response, letter", [
    ("B", "B"), ("B.", "B"), ("  C\n", "C"), ("(D)", "D"), ("The answer is B.", "B"),
    ("Answer: B", "A"), ("D) dog", "D"), ("the answer is c", None), ("It is B!!", None),
    ("None", None), ("", None), ("   ", None), (None, None), (2, None), ("A\nB", "A"), ("x\nB.", "B"),
])
def test_mmsu_letter(response, letter):
    assert mmsu_letter(response) == letter


def test_mmsu_documented_edge_cases():
    # "The answer is B." is B; "Answer: B" is A (its first character) and is therefore wrong here.
    assert judge("mmsu", "The answer is B.", MMSU_CHOICES, MMSU_GOLD) == Verdict(True, True)
    assert judge("mmsu", "Answer: B", MMSU_CHOICES, MMSU_GOLD) == Verdict(False, True)
    assert judge("mmsu", "I cannot tell.", MMSU_CHOICES, MMSU_GOLD) == Verdict(False, False)


def test_mmsu_compares_choice_text_not_index():
    # a letter past the options is parsed but wrong; a duplicate of the gold text counts as right,
    # as the released scorer compares the chosen option's text with answer_gt
    assert judge("mmsu", "C", ["yes", "no"], 0) == Verdict(False, True)
    assert judge("mmsu", "B", ["same", "same", "other"], 0) == Verdict(True, True)


def test_mmau_bare_letter_is_wrong():
    answer, choices = MMAU_ITEM["answer"], MMAU_ITEM["choices"]
    assert not mmau_match(answer, "A", choices)
    assert not mmau_match(answer, "(A)", choices)
    assert mmau_match(answer, "A dog barking.", choices)
    assert mmau_match(answer, "a DOG is barking", choices)  # "is" is in no option


def test_mmau_token_rule_details():
    choices = MMAU_ITEM["choices"]
    # shares "a" with wrong options: allowed, since "a" is an answer token
    assert mmau_match("A dog barking", "dog barking a", choices)
    # names a wrong option's word
    assert not mmau_match("A dog barking", "A dog barking at a car", choices)
    # misses an answer token
    assert not mmau_match("A dog barking", "dog", choices)
    # no word tokens at all, or not a string
    assert not mmau_match("A dog barking", "?!", choices)
    assert not mmau_match("A dog barking", None, choices)
    # an option with the same token set as the answer adds no forbidden tokens
    assert mmau_match("Man, speaking", "man speaking", ["man speaking", "Man, speaking", "woman"])


def test_letter_mapping_is_opt_in_and_separate():
    answer_index = 0
    verdict = judge("mmau", "A", MMAU_ITEM["choices"], answer_index, letter_mapping=True)
    assert verdict == Verdict(correct=False, parsed=True, letter_mapped=True)
    assert judge("mmau", "A", MMAU_ITEM["choices"], answer_index).letter_mapped is None
    # a sentence starting with an article is not a letter answer
    assert map_letter("A car horn", MMAU_ITEM["choices"]) == "A car horn"
    assert map_letter("D: horn", MMAU_ITEM["choices"]) == "A car horn"
    assert map_letter("E", MMAU_ITEM["choices"]) == "E"


def test_summarize_reports_both_mmsu_denominators():
    verdicts = [Verdict(True), Verdict(True), Verdict(False), Verdict(False, parsed=False),
                Verdict(False, parsed=False)]
    summary = summarize(verdicts)
    # as MMSU's official scorer does, the headline leaves unparseable responses out of the denominator
    assert summary["accuracy"] == pytest.approx(200 / 3)  # 2 / 3 parsed
    assert summary["accuracy_all"] == pytest.approx(40.0)  # 2 / 5: unparseable counted wrong
    assert (summary["unparseable"], summary["failed"]) == (2, 0)
    assert "accuracy_parsed" not in summary
    assert summarize([Verdict(False, parsed=False)])["accuracy"] is None
    assert summarize([Verdict(False, parsed=False)])["accuracy_all"] == 0.0


def test_failed_decode_is_wrong_not_unparseable():
    # a failed decode is no response: it stays in both MMSU denominators as wrong
    verdict = judge("mmsu", None, ["x", "y"], 1, failed=True)
    assert verdict == Verdict(correct=False, parsed=False, failed=True)
    summary = summarize([Verdict(True), verdict, Verdict(False, parsed=False)])
    assert (summary["unparseable"], summary["failed"]) == (1, 1)
    assert summary["accuracy"] == pytest.approx(50.0)  # 1 / (3 - 1 unparseable)
    assert summary["accuracy_all"] == pytest.approx(100 / 3)
    # the MMAU rule: wrong, and wrong after letter mapping too (the mapped figure stays reported)
    mapped = judge("mmau", None, ["x", "y"], 0, letter_mapping=True, failed=True)
    assert (mapped.correct, mapped.letter_mapped, mapped.failed) == (False, False, True)
    assert summarize([mapped, Verdict(True, letter_mapped=True)], "mmau")["accuracy_letter_mapped"] == 50.0


def test_judge_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown multiple-choice rule 'mmlu'"):
        judge("mmlu", "A", ["x", "y"], 0)
    with pytest.raises(ValueError, match="gold index 2 is outside the 2 choices"):
        judge("mmau", "x", ["x", "y"], 2)
    with pytest.raises(ValueError, match="no gold index and no answer text"):
        judge("mmau", "x", ["x", "y"], None)


def test_an_answer_in_no_choice_is_judged_by_its_text():
    """The released MMAR item whose answer names two choices: MMAU's token rule against the answer
    text (as the official scorer), never right under MMSU's letter rule (no option is the answer)."""
    choices, answer = ["American", "Colombian", "Mexican"], "American\nColombian"
    assert judge("mmau", "American and Colombian", choices, None, answer=answer).correct
    assert not judge("mmau", "American", choices, None, answer=answer).correct
    assert not judge("mmau", "American, Colombian or Mexican", choices, None, answer=answer).correct
    assert not any(judge("mmsu", letter, choices, None, answer=answer).correct for letter in "ABC")


def test_open_match():
    assert open_match("Pink noise", "pink   noise!") == {"exact": True, "contains": True}
    assert open_match("pink noise", "I hear pink noise") == {"exact": False, "contains": True}
    assert open_match("pink noise", "white noise") == {"exact": False, "contains": False}
    assert open_match("pink", "") == {"exact": False, "contains": False}
    assert open_match("pink", ["pink"]) == {"exact": False, "contains": False}


def test_repeated_choices_either_copy_is_right():
    # MMAU test-mini repeats options ('two, three, three, one'); gold is the first copy.
    choices = ["two", "three", "three", "one"]
    assert judge("mmsu", "C", choices, 1).correct and judge("mmsu", "B", choices, 1).correct
    assert judge("mmau", "three", choices, 1).correct
    assert judge("mmau", "C", choices, 1, letter_mapping=True).letter_mapped
