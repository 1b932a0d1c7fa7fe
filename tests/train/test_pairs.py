"""diffa.train.pairs: rule-based fact swaps, external pairs, sampled + ranked pairs, held-out split."""

import json
import random
from pathlib import Path

import pytest

from diffa.data.corpora.authors_json import authors_row
from diffa.data.corpora.records import Record
from diffa.data.pairs import validate_pair
from diffa.train.pairs import (answer_error, build_pairs, property_values, rank_samples, split_by_utterance,
                               swap_fact, swap_word, transcript_vocabulary)

MINI_LOCAL = Path(__file__).parents[2] / "egs" / "mini" / "local"


@pytest.fixture
def mini_rows(monkeypatch):
    """Task rows exactly as the egs/mini corpus writes them (local/questions.py)."""
    monkeypatch.syspath_prepend(str(MINI_LOCAL))
    from questions import PROPERTIES, clip_rows

    rng = random.Random(0)
    rows = []
    for i, (gender, rate, pitch) in enumerate([("male", "slow", "low"), ("female", "fast", "high"), ("male", "fast", "low")]):
        facts = {"kind": "speech", "gender": gender, "rate": rate, "pitch": pitch,
                 "sentence": ["every small girl jumps early", "the red cat sleeps", "a big dog runs fast"][i]}
        rows += clip_rows(rng, f"spk-{i}", facts, ("gender", "rate", "pitch"), "mini")
    for i, (noise, loud) in enumerate([("pink", "loud"), ("white", "soft"), ("brown", "soft")]):
        rows += clip_rows(rng, f"sound-{i}", {"kind": "noise", "noise": noise, "loudness": loud}, ("kind", "noise", "loudness"), "mini")
    rows += clip_rows(rng, "sound-9", {"kind": "beeps", "beeps": "two", "tone": "low", "loudness": "loud"},
                      ("kind", "beeps", "tone", "loudness"), "mini")
    return rows, PROPERTIES


def test_every_swap_changes_exactly_one_fact(mini_rows):
    rows, properties = mini_rows
    pairs, stats = build_pairs(rows, modes=("swap",), rng=random.Random(1))
    by_id = {r["id"]: r for r in rows}
    values = property_values(rows)
    assert len(pairs) == sum(v for k, v in stats.items() if k.startswith("swap:"))
    for pair in pairs:
        validate_pair(pair, pair["id"])
        row = by_id[pair["id"].removesuffix("-swap")]
        label = pair["source"].split(":", 1)[1]
        assert pair["chosen"] == row["answer"] and pair["prompt"] == row["instruction"] and pair["utt"] == row["utt"]
        chosen, rejected = pair["chosen"].split(), pair["rejected"].split()
        assert len(chosen) == len(rejected)  # same template: only one word differs
        changed = [(a, b) for a, b in zip(chosen, rejected) if a != b]
        assert len(changed) == 1
        old, new = changed[0]
        if row["task"] == "asr":
            assert label == "transcript" and new in transcript_vocabulary(rows)
        else:
            assert label == row["labels"]["asks"] and old == row["labels"][label]
            assert new in values[label] and new not in properties[label].distractors
    kinds = {p["source"] for p in pairs}
    assert {"swap:transcript", "swap:gender", "swap:rate", "swap:noise", "swap:kind"} <= kinds
    # the kinds answered are noise and beeps: "speech" (a fact of speech clips, a distractor of
    # sound questions) is never a rejected answer
    assert values["kind"] == ["beeps", "noise"]
    # beeps and tone have one value in this set: their questions give no pair
    assert stats["skipped:swap"] == sum(1 for r in rows if r["labels"].get("asks") in ("beeps", "tone"))


def test_swap_keeps_the_sentence_fluent():
    values = {"gender": ["female", "male"], "rate": ["fast", "slow"]}
    row = {"task": "open_qa", "answer": "Male. The speaker is a male adult.", "labels": {"gender": "male", "rate": "slow"}}
    label, rejected = swap_fact(row, values, random.Random(0))
    # without "asks", only facts the answer states are candidates: gender (rate is not in the text);
    # every mention is swapped (the answer must not contradict itself), each keeping its case
    assert label == "gender" and rejected == "Female. The speaker is a female adult."
    shouting = dict(row, answer="MALE SPEAKER: a male, not a female (Male).")
    assert swap_fact(shouting, values, random.Random(0)) == ("gender", "FEMALE SPEAKER: a female, not a female (Female).")
    assert swap_fact(dict(row, labels={"asks": "rate", "rate": "slow"}), values, random.Random(0)) is None
    assert swap_fact({"task": "mcq", "answer": "male", "labels": {"asks": "gender", "gender": "male"}},
                     {"gender": ["male"]}, random.Random(0)) is None  # no other value seen


def test_empty_values_are_no_facts_and_case_variants_are_one_value(caplog):
    rows = [{"id": "a-0", "utt": "a", "task": "open_qa", "instruction": "Describe.",
             "answer": "The speaker is male and speaks slowly.", "labels": {"gender": "male", "rate": "slow", "accent": ""}},
            {"id": "b-0", "utt": "b", "task": "open_qa", "instruction": "Describe.",
             "answer": "A female voice, fast.", "labels": {"gender": "female", "rate": "fast", "accent": "scottish"}}]
    assert property_values(rows) == {"accent": ["scottish"], "gender": ["female", "male"], "rate": ["fast", "slow"]}
    for seed in range(6):
        pairs, stats = build_pairs(rows, modes=("swap",), rng=random.Random(seed))
        assert len(pairs) == 2 and not any("scottish" in p["rejected"] for p in pairs)
        assert stats["ignored:empty_label"] == 1 and "swap:accent" not in stats
    assert "1 empty label values" in caplog.text and "task 'a-0', label 'accent'" in caplog.text
    asks_empty = {"task": "open_qa", "answer": "It is hard to say.", "labels": {"asks": "accent", "accent": ""}}
    assert swap_fact(asks_empty, {"accent": ["scottish"]}, random.Random(0)) is None
    # 'male' and 'Male' are one fact: no pair says 'male' is wrong because it should be 'Male'
    cased = [{"id": i, "utt": i, "task": "open_qa", "instruction": "Q", "answer": a, "labels": {"asks": "gender", "gender": a}}
             for i, a in (("a", "male"), ("b", "Male"))]
    assert property_values(cased) == {"gender": ["Male"]}
    assert build_pairs(cased, modes=("swap",), rng=random.Random(0)) == ([], {"skipped:swap": 2})
    assert swap_fact(cased[0], {"gender": ["Male", "female", "male"]}, random.Random(0)) == ("gender", "female")


def test_swap_word_replaces_one_word_with_a_vocabulary_word():
    vocab = ["A", "BIG", "CAT", "DOG"]
    for seed in range(20):
        out = swap_word("A BIG CAT", vocab, random.Random(seed)).split()
        diffs = [i for i, (a, b) in enumerate(zip("A BIG CAT".split(), out)) if a != b]
        assert len(out) == 3 and len(diffs) == 1 and out[diffs[0]] in vocab
    assert swap_word("<nospeech>", vocab, random.Random(0)) is None
    assert swap_word("CAT", ["CAT"], random.Random(0)) is None


def test_external_pairs_from_the_authors_format(caplog):
    item = {"audio_id": "vctk_p225_001", "audio_filepath": "a.wav", "input": "Describe the speaker.",
            "target": "A young woman speaks calmly.", "rejected": "A young man speaks calmly.", "dataset": "vctk",
            "gender": "female"}
    row = authors_row(Record(item, "pref.json:3"), "vctk_p225_001-0", "vctk_p225_001", "pref")
    pairs, stats = build_pairs([row], modes=("external",))
    assert pairs == [{"id": "vctk_p225_001-0-external", "utt": "vctk_p225_001", "prompt": "Describe the speaker.",
                      "chosen": "A young woman speaks calmly.", "rejected": "A young man speaks calmly.",
                      "source": "external", "labels": {"gender": "female"}}]
    assert stats == {"external": 1}
    plain = dict(row, labels={})
    assert build_pairs([plain], modes=("external",))[1] == {"skipped:external": 1}
    # a 'rejected' equal to the answer, or empty, gives no pair, counted and warned about
    same = [dict(row, id=f"s{i}", labels={"rejected": rejected}) for i, rejected in enumerate((row["answer"], " "))]
    assert build_pairs(same + [row], modes=("external",))[1] == {"external": 1, "skipped:external": 2}
    assert "2 rows have a 'rejected' answer that is empty or equal to their answer (first: task 's0')" in caplog.text


def test_answer_error_and_ranking():
    asr = {"task": "asr", "answer": "THE CAT SAT DOWN"}
    assert answer_error(asr, "the cat sat down") == 0.0
    assert answer_error(asr, "the dog sat") == pytest.approx(0.5)
    assert rank_samples(asr, ["the cat sat down", "the dog sat down", "a dog sat"]) == "a dog sat"
    assert rank_samples(asr, ["the cat sat down", "THE CAT SAT DOWN"]) is None
    mcq = {"task": "mcq", "answer": "pink", "choices": ["white", "pink", "brown", "blue"], "gold": 1}
    assert [answer_error(mcq, s) for s in ("pink", "It is pink noise.", "white", "pink or white")] == [0.0, 0.0, 1.0, 1.0]
    assert rank_samples(mcq, ["pink", "pink noise", "brown", "white"]) == "brown"  # first of the worst


def test_sampled_mode_ranks_a_fake_sampler():
    rows = [{"id": "a-asr-0", "utt": "a", "task": "asr", "instruction": "Transcribe.", "answer": "THE CAT SAT"},
            {"id": "b-mcq-0", "utt": "b", "task": "mcq", "instruction": "Which?", "answer": "pink",
             "choices": ["white", "pink"], "gold": 1},
            {"id": "c-mcq-0", "utt": "c", "task": "mcq", "instruction": "Which?", "answer": "pink",
             "choices": ["white", "pink"], "gold": 1}]
    answers = {"a": ["THE CAT SAT", "THE HAT SAT", "A HAT"], "b": ["pink", "white"], "c": ["pink", "it is pink"]}
    seen = []

    def sampler(batch):
        seen.append([r["id"] for r in batch])
        return [answers[r["utt"]] for r in batch]

    pairs, stats = build_pairs(rows, modes=("sampled",), sampler=sampler)
    assert seen == [["a-asr-0", "b-mcq-0", "c-mcq-0"]]  # one call for the whole set
    assert [(p["id"], p["rejected"], p["source"]) for p in pairs] == [("a-asr-0-sampled", "A HAT", "sampled"),
                                                                      ("b-mcq-0-sampled", "white", "sampled")]
    assert stats["skipped:sampled"] == 1  # every sample of c is right
    with pytest.raises(ValueError, match="needs a sampler"):
        build_pairs(rows, modes=("sampled",))
    with pytest.raises(ValueError, match="returned answers for 1 of 3 rows"):
        build_pairs(rows, modes=("sampled",), sampler=lambda batch: [["x"]])
    with pytest.raises(ValueError, match="modes must be a non-empty subset"):
        build_pairs(rows, modes=("swapped",))


def test_sampled_mode_stops_at_its_budget():
    rows = [{"id": f"u{i}-0", "utt": f"u{i}", "task": "mcq", "instruction": "Which?", "answer": "pink",
             "choices": ["white", "pink"], "gold": 1} for i in range(40)]
    wrong = {f"u{i}" for i in range(0, 40, 4)}  # a quarter of the rows has a wrong sample
    calls = []

    def sampler(batch):
        calls.append([r["utt"] for r in batch])
        return [["pink", "white"] if r["utt"] in wrong else ["pink"] for r in batch]

    pairs, stats = build_pairs(rows, modes=("sampled",), rng=random.Random(0), sampler=sampler, max_sampled=5)
    sampled = [u for call in calls for u in call]
    assert len(pairs) == 5 and len(set(sampled)) == len(sampled) < 40
    assert calls[0] != [f"u{i}" for i in range(5)]  # a random part of the set, not its first rows
    assert len(calls[0]) == 5  # no more rows than pairs are missing
    assert stats["sampled"] + stats["skipped:sampled"] + stats["unvisited:sampled"] == 40
    # a budget larger than the set can give: every row is sampled once, nothing is left unvisited
    calls.clear()
    pairs, stats = build_pairs(rows, modes=("sampled",), rng=random.Random(0), sampler=sampler, max_sampled=100)
    assert len(pairs) == 10 and sorted(u for call in calls for u in call) == sorted(r["utt"] for r in rows)
    assert "unvisited:sampled" not in stats


def test_split_by_utterance_is_disjoint_and_reproducible():
    pairs = [{"id": f"{u}-{k}", "utt": u} for u in "abcdefghij" for k in range(3)]
    train, held = split_by_utterance(pairs, 0.2, random.Random(3))
    assert len({p["utt"] for p in held}) == 2 and len(train) + len(held) == 30
    assert not {p["utt"] for p in train} & {p["utt"] for p in held}
    assert split_by_utterance(pairs, 0.2, random.Random(3)) == (train, held)
    assert split_by_utterance(pairs, 0.0, random.Random(3)) == (pairs, [])
    assert len({p["utt"] for p in split_by_utterance(pairs, 0.01, random.Random(3))[1]}) == 1
    with pytest.raises(ValueError, match="held-out fraction"):
        split_by_utterance(pairs, 1.0, random.Random(3))


def test_pairs_serialise_as_json(mini_rows):
    pairs, _ = build_pairs(mini_rows[0], modes=("swap",))
    assert json.loads(json.dumps(pairs)) == pairs
