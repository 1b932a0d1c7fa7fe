"""Answer-matching rules of the benchmarks: MMSU's letter rule, MMAU/MMAR's token-set rule, and
short-answer matching for open questions.

MMSU (the rule of its official scorer): the response is stripped and its newlines removed; its first
character, if it is one of ``A B C D``, is the chosen letter, else its second-to-last character if
that is one (``"The answer is B."`` -> ``B``); anything else, an empty response and the literal
``"None"`` are unparseable. The response is right when the text of the chosen option equals the
gold option's text (so ``"Answer: B"`` chooses ``A``). As MMSU's official scorer does, the headline
``accuracy`` of :func:`summarize` leaves unparseable responses out of the denominator;
``accuracy_all`` keeps every item (an unparseable response counted wrong) and is reported beside
it. A failed decode (no response at all: the decoder failed on the item or never wrote it) is not
an unparseable response: it is counted as ``failed``, judged wrong and kept in both denominators,
so decoding failures cannot raise the headline.

MMAU and MMAR (MMAU's ``string_match``, which MMAR's scorer reuses): prediction, gold answer and
options become sets of lowercase word tokens (``\\b\\w+\\b``); the prediction is right when it
holds every token of the answer and none of the tokens that only wrong options have (tokens of
an option identical to the answer, and tokens the answer shares, are allowed). A prediction with
no word token is wrong, and so is a bare letter ``"A"`` (it names no option's words). The
opt-in letter mapping (:func:`map_letter`) first replaces a prediction that is just an option
letter (``A``, ``(A)``, ``A.``, ``A)``, ``A:``), or a letter marker followed by text (``(B) a
dog``, ``B. a dog``), with that option's text; its accuracy is reported separately.

Open questions: a prediction matches exactly when its lowercase word tokens equal the answer's,
and "contains" the answer when it holds every answer token.

Example
-------
>>> mmsu_letter("The answer is B."), mmsu_letter("Answer: B"), mmsu_letter("I think so")
('B', 'A', None)
>>> choices = ["a man speaking", "a dog barking", "rain"]
>>> mmau_match("a dog barking", "A dog is barking.", choices), mmau_match("a dog barking", "B", choices)
(True, False)
>>> mmau_match("a dog barking", map_letter("B", choices), choices)
True
"""

import re
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Set

MMSU_LETTERS = "ABCD"
"""The option letters MMSU's rule recognises."""

RULES = ("mmsu", "mmau")
"""Multiple-choice rules: MMSU's letter rule, MMAU's token-set rule (also MMAR's and the
generic sets')."""

_WORD = re.compile(r"\b\w+\b")
_LONE_LETTER = re.compile(r"\s*(?:\(([A-Z])\)|([A-Z])[.:)]?)\s*")
_LETTER_MARKER = re.compile(r"\s*(?:\(([A-Z])\)|([A-Z])[.:)])\s+\S")


def word_tokens(text: str) -> Set[str]:
    """The set of lowercase word tokens MMAU's rule compares.

    Arguments
    ---------
    text : str
        Any text.

    Returns
    -------
    set of str

    Example
    -------
    >>> sorted(word_tokens("It's a Dog, a DOG!"))
    ['a', 'dog', 'it', 's']
    """
    return set(_WORD.findall(text.lower()))


def mmsu_letter(response: object) -> Optional[str]:
    """The option letter MMSU's rule reads from a response.

    Arguments
    ---------
    response : object
        The model's response; anything that is not a string is unparseable.

    Returns
    -------
    str or None
        ``"A"`` to ``"D"``, or None when the response is unparseable.

    Example
    -------
    >>> [mmsu_letter(r) for r in ["B", " C\\n", "(D)", "Answer: B", "None", "", 3]]
    ['B', 'C', 'D', 'A', None, None, None]
    """
    if not isinstance(response, str):
        return None
    text = response.strip().replace("\n", "")
    if not text or text == "None":
        return None
    if text[0] in MMSU_LETTERS:
        return text[0]
    if len(text) > 1 and text[-2] in MMSU_LETTERS:
        return text[-2]
    return None


def mmau_match(answer: str, prediction: object, choices: Sequence[str]) -> bool:
    """MMAU's (and MMAR's) rule: does the prediction name the answer and no other option?

    Arguments
    ---------
    answer : str
        The gold option's text.
    prediction : object
        The model's response; anything that is not a string is wrong.
    choices : sequence of str
        All options, the answer included.

    Returns
    -------
    bool

    Example
    -------
    >>> choices = ["Man", "Woman"]
    >>> mmau_match("Woman", "The speaker is a woman.", choices), mmau_match("Woman", "A", choices)
    (True, False)
    >>> mmau_match("Woman", "man or woman", choices), mmau_match("Woman", "", choices)
    (False, False)
    """
    if not isinstance(prediction, str):
        return False
    predicted = word_tokens(prediction)
    if not predicted:
        return False
    gold = word_tokens(answer)
    wrong: Set[str] = set()
    for choice in choices:
        tokens = word_tokens(choice)
        if tokens != gold:
            wrong |= tokens - gold
    return gold <= predicted and predicted.isdisjoint(wrong)


def map_letter(prediction: object, choices: Sequence[str]) -> object:
    """Replace a letter answer with the text of the option it names (the opt-in letter mapping).

    Arguments
    ---------
    prediction : object
        The model's response.
    choices : sequence of str
        The options, lettered A, B, C, ... in order.

    Returns
    -------
    object
        The option's text when the prediction is an option letter alone (``A``, ``(A)``, ``A.``,
        ``A)``, ``A:``) or a letter marker then text (``(A) ...``, ``A. ...``, ``A: ...``,
        ``A) ...``) and the letter names an option; otherwise the prediction unchanged.

    Example
    -------
    >>> choices = ["rain", "wind"]
    >>> [map_letter(p, choices) for p in ["B", "(A)", "B. wind", "A rainy day", "C", None]]
    ['wind', 'rain', 'wind', 'A rainy day', 'C', None]
    """
    if not isinstance(prediction, str):
        return prediction
    match = _LONE_LETTER.fullmatch(prediction) or _LETTER_MARKER.match(prediction)
    if match is None:
        return prediction
    index = ord(match.group(1) or match.group(2)) - ord("A")
    return choices[index] if index < len(choices) else prediction


def open_match(answer: str, prediction: object) -> Dict[str, bool]:
    """Short-answer matching for open questions.

    Arguments
    ---------
    answer : str
        The reference answer.
    prediction : object
        The model's response; anything that is not a string matches nothing.

    Returns
    -------
    dict
        ``exact``: same lowercase word tokens in the same order; ``contains``: every answer token
        is in the prediction (both False when the answer or the prediction has no word token).

    Example
    -------
    >>> open_match("Pink noise", "pink noise."), open_match("pink", "It is pink noise")
    ({'exact': True, 'contains': True}, {'exact': False, 'contains': True})
    """
    if not isinstance(prediction, str):
        return {"exact": False, "contains": False}
    gold, predicted = _WORD.findall(answer.lower()), _WORD.findall(prediction.lower())
    if not gold or not predicted:
        return {"exact": False, "contains": False}
    return {"exact": gold == predicted, "contains": set(gold) <= set(predicted)}


@dataclass(frozen=True)
class Verdict:
    """How one multiple-choice item was judged.

    Arguments
    ---------
    correct : bool
        Right under the rule (an unparseable MMSU response is not, nor is a failed decode).
    parsed : bool
        MMSU: a letter was found; MMAU rule: True for every response. False for a failed decode.
    letter_mapped : bool or None
        Right after :func:`map_letter` (MMAU rule with the mapping on), else None.
    failed : bool
        The decoder produced no response (a failed row): wrong, and not counted as unparseable.

    Example
    -------
    >>> Verdict(correct=False, parsed=False).parsed
    False
    """

    correct: bool
    parsed: bool = True
    letter_mapped: Optional[bool] = None
    failed: bool = False


def gold_text(choices: Sequence[str], gold: Optional[int], answer: Optional[str] = None) -> str:
    """The text a response is judged against: the gold option's, or ``answer`` when ``gold`` is
    None (the benchmark's answer is none of the options, as in a few released MMAR items).

    Example
    -------
    >>> gold_text(["x", "y"], 1), gold_text(["x", "y"], None, "x and y")
    ('y', 'x and y')
    >>> gold_text(["x", "y"], None)
    Traceback (most recent call last):
     ...
    ValueError: no gold index and no answer text to judge against (choices ['x', 'y'])
    """
    if gold is None:
        if not isinstance(answer, str) or not answer.strip():
            raise ValueError(f"no gold index and no answer text to judge against (choices {list(choices)!r})")
        return answer
    if not 0 <= gold < len(choices):
        raise ValueError(f"gold index {gold} is outside the {len(choices)} choices {list(choices)!r}")
    return choices[gold]


def judge(rule: str, prediction: object, choices: Sequence[str], gold: Optional[int],
          letter_mapping: bool = False, failed: bool = False, answer: Optional[str] = None) -> Verdict:
    """Judge one multiple-choice response.

    Arguments
    ---------
    rule : str
        ``"mmsu"`` or ``"mmau"`` (MMAU, MMAR and generic sets).
    prediction : object
        The model's response.
    choices : sequence of str
        The options in the order shown to the model.
    gold : int or None
        Index of the correct option; None when the benchmark's answer is none of the options
        (a few released MMAR items), which is then judged against ``answer``, as the official
        scorers do: by its text under the MMAU rule, never right under the MMSU letter rule.
    letter_mapping : bool
        MMAU rule only: also judge the letter-mapped prediction.
    failed : bool
        The row is a failed decode: no response to judge; the verdict is wrong (also after letter
        mapping) with ``failed`` set, and is not an unparseable response.
    answer : str, optional
        The answer text, needed when ``gold`` is None.

    Returns
    -------
    Verdict

    Example
    -------
    >>> judge("mmsu", "The answer is B.", ["x", "y"], 1)
    Verdict(correct=True, parsed=True, letter_mapped=None, failed=False)
    >>> judge("mmsu", "maybe", ["x", "y"], 1)
    Verdict(correct=False, parsed=False, letter_mapped=None, failed=False)
    >>> judge("mmsu", None, ["x", "y"], 1, failed=True)
    Verdict(correct=False, parsed=False, letter_mapped=None, failed=True)
    >>> judge("mmau", "B", ["cat", "dog"], 1, letter_mapping=True)
    Verdict(correct=False, parsed=True, letter_mapped=True, failed=False)
    >>> judge("mmau", "both American and Colombian", ["American", "Colombian"], None,
    ...       answer="American\\nColombian").correct
    True
    """
    if rule not in RULES:
        raise ValueError(f"unknown multiple-choice rule {rule!r}; use one of {', '.join(RULES)}")
    answer = gold_text(choices, gold, answer)
    if failed:
        return Verdict(correct=False, parsed=False, letter_mapped=False if letter_mapping and rule == "mmau" else None,
                       failed=True)
    if rule == "mmsu":
        letter = mmsu_letter(prediction)
        if letter is None:
            return Verdict(correct=False, parsed=False)
        index = MMSU_LETTERS.index(letter)
        return Verdict(correct=index < len(choices) and choices[index] == answer)
    mapped = mmau_match(answer, map_letter(prediction, choices), choices) if letter_mapping else None
    return Verdict(correct=mmau_match(answer, prediction, choices), letter_mapped=mapped)


def summarize(verdicts: Sequence[Verdict], rule: str = "mmsu") -> Dict[str, object]:
    """Accuracies (percent) of a list of verdicts.

    Arguments
    ---------
    verdicts : sequence of Verdict
        From :func:`judge`.
    rule : str
        The rule that judged them; MMSU's adds the parse counts.

    Returns
    -------
    dict
        ``n``, ``correct``, ``accuracy``: the headline. MMAU rule: every item in the denominator.
        MMSU (official scorer): unparseable responses left out of the denominator (failed decodes stay
        in, as wrong); MMSU also adds ``unparseable``, ``failed`` and ``accuracy_all`` (every item
        in the denominator). When the verdicts carry a letter mapping, ``correct_letter_mapped``
        and ``accuracy_letter_mapped``. Accuracies are None when their denominator is 0.

    Example
    -------
    >>> summarize([Verdict(True), Verdict(False), Verdict(False, parsed=False)])
    {'n': 3, 'correct': 1, 'accuracy': 50.0, 'unparseable': 1, 'failed': 0, 'accuracy_all': 33.33...}
    >>> summarize([Verdict(True), Verdict(False, parsed=False, failed=True)])["accuracy"]
    50.0
    >>> summarize([Verdict(True, letter_mapped=True), Verdict(False, letter_mapped=True)], "mmau")
    {'n': 2, 'correct': 1, 'accuracy': 50.0, 'correct_letter_mapped': 2, 'accuracy_letter_mapped': 100.0}
    """
    n = len(verdicts)
    correct = sum(v.correct for v in verdicts)
    summary: Dict[str, object] = {"n": n, "correct": correct, "accuracy": percent(correct, n)}
    if rule == "mmsu":
        failed = sum(v.failed for v in verdicts)
        unparseable = sum(not v.parsed and not v.failed for v in verdicts)
        summary.update(accuracy=percent(correct, n - unparseable), unparseable=unparseable, failed=failed,
                       accuracy_all=percent(correct, n))
    if verdicts and verdicts[0].letter_mapped is not None:
        mapped = sum(bool(v.letter_mapped) for v in verdicts)
        summary.update(correct_letter_mapped=mapped, accuracy_letter_mapped=percent(mapped, n))
    return summary


def percent(numerator: int, denominator: int) -> Optional[float]:
    """``100 * numerator / denominator``, or None when the denominator is 0.

    Arguments
    ---------
    numerator, denominator : int
        Counts.

    Returns
    -------
    float or None

    Example
    -------
    >>> percent(1, 4), percent(0, 0)
    (25.0, None)
    """
    return 100.0 * numerator / denominator if denominator else None
