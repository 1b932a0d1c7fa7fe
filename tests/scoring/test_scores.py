"""Tests of diffa.scoring.scores: per-task scoring, metric resolution, row checks and per-label
groups."""
import pytest

from diffa.scoring.scores import group_rows, resolve_metrics, score_results

MMSU_LABELS = ("task_name", "category", "sub-category", "sub-sub-category")


def mmsu_row(item, response):
    """A results row for an item in the released MMSU layout."""
    choices = [item[k] for k in ("choice_a", "choice_b", "choice_c", "choice_d") if item.get(k) is not None]
    return {"id": item["id"], "task": "mcq", "hypothesis": response, "reference": item["answer_gt"],
            "choices": choices, "gold": choices.index(item["answer_gt"]),
            "labels": {k: item[k] for k in MMSU_LABELS if k in item}, "source": "MMSU"}


def mmau_row(item, response, source="MMAU", label_keys=("task", "difficulty", "sub-category")):
    """A results row for an item in MMAU's (or MMAR's) layout."""
    return {"id": item["id"], "task": "mcq", "hypothesis": response, "reference": item["answer"],
            "choices": item["choices"], "gold": item["choices"].index(item["answer"]),
            "labels": {k: item[k] for k in label_keys if k in item}, "source": source}


def mmsu_item(n, category, sub, answer_letter, task="t1"):
    choices = {"choice_a": f"a{n}", "choice_b": f"b{n}", "choice_c": f"c{n}", "choice_d": None}
    answer = choices["choice_" + answer_letter.lower()]
    return {"id": f"mmsu_{n}", "task_name": task, "audio_path": f"audio/{n}.wav", "question": "Q?",
            **choices, "answer_gt": answer, "category": category, "sub-category": sub,
            "sub-sub-category": "x"}


def test_mmsu_headline_leaves_unparseable_out_and_tables_match():
    rows = [
        mmsu_row(mmsu_item(1, "Phonology", "Perception", "B"), "The answer is B."),  # right
        mmsu_row(mmsu_item(2, "Phonology", "Perception", "B"), "Answer: B"),  # reads A: wrong
        mmsu_row(mmsu_item(3, "Phonology", "Reasoning", "C"), "I am not sure"),  # unparseable
        mmsu_row(mmsu_item(4, "Semantics", "Reasoning", "A", task="t2"), "A"),  # right
        mmsu_row(mmsu_item(5, "Semantics", "Reasoning", "C", task="t2"), None),  # non-string: unparseable
    ]
    data = score_results(rows, "mmsu").data
    assert data["metric"] == "mmsu"
    # as MMSU's official scorer does, the headline leaves unparseable responses out of the denominator
    assert data["metrics"] == {"mcq_accuracy": pytest.approx(200 / 3),  # 2 of 3 parsed
                               "mcq_accuracy_all": pytest.approx(40.0)}  # 2 of 5
    assert data["primary"] == ["mcq_accuracy"]
    assert (data["mcq"]["accuracy"], data["mcq"]["accuracy_all"]) == (data["metrics"]["mcq_accuracy"],
                                                                      data["metrics"]["mcq_accuracy_all"])
    assert (data["mcq"]["unparseable"], data["counts"]["invalid_hypotheses"]) == (2, 1)
    assert data["invalid_hypothesis_ids"] == ["mmsu_5"]
    tables = data["mcq"]["tables"]
    assert list(tables) == ["category", "category+sub-category", "task_name"]
    # the tables' "accuracy" is the headline's figure
    assert tables["category"]["Phonology"] == {"n": 3, "correct": 1, "accuracy": 50.0, "unparseable": 1,
                                               "failed": 0, "accuracy_all": pytest.approx(100 / 3)}
    assert tables["category+sub-category"]["Phonology / Reasoning"]["accuracy"] is None
    assert tables["category+sub-category"]["Phonology / Reasoning"]["accuracy_all"] == 0.0
    assert tables["task_name"]["t2"]["accuracy"] == 100.0 and tables["task_name"]["t2"]["accuracy_all"] == 50.0


def test_mmsu_failed_rows_stay_in_the_denominator():
    # a failed decode (or an item missing from the results) is no model response: it is counted
    # as failed and wrong, not as unparseable, so failures cannot raise the headline
    rows = [mmsu_row(mmsu_item(1, "Phonology", "Perception", "B"), "B"),  # right
            mmsu_row(mmsu_item(2, "Phonology", "Perception", "A"), "maybe"),  # unparseable
            {**mmsu_row(mmsu_item(3, "Phonology", "Perception", "C"), None), "failed": True, "error": "OOM"},
            {**mmsu_row(mmsu_item(4, "Phonology", "Perception", "A"), "A"), "failed": True, "error": "OOM"}]
    scores = score_results(rows, "mmsu")
    data = scores.data
    assert (data["counts"]["failed"], data["counts"]["invalid_hypotheses"]) == (2, 0)
    assert (data["mcq"]["unparseable"], data["mcq"]["failed"]) == (1, 2)
    assert data["metrics"]["mcq_accuracy"] == pytest.approx(100 / 3)  # 1 of 3: failed rows kept
    assert data["metrics"]["mcq_accuracy_all"] == 25.0  # 1 of 4
    assert data["mcq"]["tables"]["category"]["Phonology"]["accuracy"] == pytest.approx(100 / 3)
    judged = {j["id"]: (j["correct"], j["parsed"], j["failed"]) for j in scores.judgements}
    assert judged == {"mmsu_1": (True, True, False), "mmsu_2": (False, False, False),
                      "mmsu_3": (False, False, True), "mmsu_4": (False, False, True)}


def test_mmau_rule_tables_and_letter_mapping_reported_separately():
    def item(n, task, difficulty, answer, choices=("A dog barking", "Rain", "A car horn")):
        return {"id": f"m{n}", "audio_id": f"./test-mini-audios/m{n}.wav", "question": "?",
                "choices": list(choices), "answer": answer, "task": task, "difficulty": difficulty,
                "sub-category": "Source"}
    rows = [mmau_row(item(1, "sound", "easy", "Rain"), "It is rain."),
            mmau_row(item(2, "sound", "hard", "Rain"), "B"),  # bare letter: wrong, but B -> Rain
            mmau_row(item(3, "music", "easy", "A car horn"), "A dog barking")]
    plain = score_results(rows, "mmau_test_mini").data
    assert plain["metrics"] == {"mcq_accuracy": pytest.approx(100 / 3)}
    assert "accuracy_letter_mapped" not in plain["mcq"]
    assert list(plain["mcq"]["tables"]) == ["task", "difficulty", "sub-category"]
    assert plain["mcq"]["tables"]["task"]["sound"] == {"n": 2, "correct": 1, "accuracy": 50.0}
    mapped = score_results(rows, "mmau_test_mini", letter_mapping=True).data
    assert mapped["metrics"]["mcq_accuracy"] == plain["metrics"]["mcq_accuracy"]
    assert mapped["metrics"]["mcq_accuracy_letter_mapped"] == pytest.approx(200 / 3)
    assert mapped["mcq"]["tables"]["difficulty"]["hard"]["accuracy_letter_mapped"] == 100.0


def test_mmar_uses_mmau_rule_with_its_tables():
    item = {"id": "r1", "audio_path": "./audio/r1.wav", "question": "?", "choices": ["yes", "no"],
            "answer": "no", "modality": "speech", "category": "Semantic Layer", "sub-category": "Intent"}
    row = mmau_row(item, "no", source="MMAR", label_keys=("modality", "category", "sub-category"))
    data = score_results([row], "mmar").data
    assert (data["metric"], data["mcq"]["rule"]) == ("mmar", "mmau")
    assert list(data["mcq"]["tables"]) == ["modality", "category", "sub-category"]


def test_an_answer_in_no_choice_stays_in_the_denominator_judged_by_its_text():
    items = [{"id": f"r{n}", "audio_path": f"./audio/r{n}.wav", "question": "?", "modality": "speech",
              "choices": ["American", "Colombian"], "answer": "American"} for n in range(2)]
    rows = [mmau_row(items[0], "American", source="MMAR", label_keys=("modality",)),
            {**mmau_row(items[1], "American and Colombian", source="MMAR", label_keys=("modality",)),
             "gold": None, "reference": "American\nColombian"}]
    scores = score_results(rows, "mmar")
    assert scores.data["metrics"]["mcq_accuracy"] == 100.0 and scores.data["mcq"]["n"] == 2
    assert [j["gold"] for j in scores.judgements] == ["American", "American\nColombian"]
    rows[1]["hypothesis"] = "Colombian"
    assert score_results(rows, "mmar").data["metrics"]["mcq_accuracy"] == 50.0


def test_mixed_set_scores_each_task_type():
    rows = [
        {"id": "s1-asr", "task": "asr", "hypothesis": "a red fox", "reference": "A RED BOX",
         "labels": {"gender": "f"}},
        {"id": "s2-asr", "task": "asr", "failed": True, "error": "CUDA OOM", "reference": "HELLO",
         "labels": {"gender": "m"}},
        {"id": "s1-mcq", "task": "mcq", "hypothesis": "rising", "choices": ["rising", "falling"], "gold": 0,
         "labels": {"asks": "melody"}},
        {"id": "s2-mcq", "task": "mcq", "hypothesis": "", "choices": ["loud", "soft"], "gold": 1,
         "labels": {"asks": "loudness"}},
        {"id": "s1-open", "task": "open_qa", "hypothesis": "It is pink noise.", "reference": "pink noise",
         "labels": {"asks": "noise"}},
    ]
    scores = score_results(rows, "mini_test", styles=("wenet",), group_by=["asks", "gender"])
    data = scores.data
    assert data["metric"] == "mixed"
    assert data["primary"] == ["asr_wer", "mcq_accuracy", "open_qa_accuracy"]
    assert data["metrics"]["asr_wer"] == pytest.approx(50.0)  # BOX->FOX, HELLO deleted: 2 of 4
    assert data["metrics"]["mcq_accuracy"] == 50.0
    assert (data["metrics"]["open_qa_accuracy"], data["metrics"]["open_qa_contains"]) == (0.0, 100.0)
    assert data["counts"] == {"rows": 5, "asr": 2, "mcq": 2, "open_qa": 1, "failed": 1, "invalid_hypotheses": 1}
    assert (data["failed_ids"], data["invalid_hypothesis_ids"]) == (["s2-asr"], ["s2-mcq"])
    # a section gets a table only for labels its rows carry
    assert list(data["asr"]["tables"]) == ["gender"] and list(data["mcq"]["tables"]) == ["asks"]
    assert data["mcq"]["tables"]["asks"]["melody"]["accuracy"] == 100.0
    assert data["asr"]["tables"]["gender"]["m"]["rate"] == 100.0
    assert data["open_qa"]["tables"]["asks"]["noise"]["accuracy_contains"] == 100.0


def test_resolve_metrics():
    assert resolve_metrics([{"task": "mcq", "source": "MMSU"}], "whatever") == {"mcq": "mmsu"}
    assert resolve_metrics([{"task": "mcq"}], "MMAR_test") == {"mcq": "mmar"}
    assert resolve_metrics([{"task": "asr"}], "test_clean", "wer") == {"asr": "wer"}
    with pytest.raises(ValueError, match="--metric wer scores asr rows, but the results hold 1 mcq rows"):
        resolve_metrics([{"task": "asr"}, {"task": "mcq"}], "x", "wer")
    with pytest.raises(ValueError, match="unknown metric 'bleu'"):
        resolve_metrics([{"task": "asr"}], "x", "bleu")


def test_row_errors_name_the_row():
    with pytest.raises(ValueError, match=r"r.jsonl: id 'q' \(line 3\): an mcq row needs 'choices'"):
        score_results([{"id": "q", "task": "mcq", "hypothesis": "x", "choices": ["x"], "gold": 0, "_line": 3}],
                      "s", source="r.jsonl")
    with pytest.raises(ValueError, match="'task' must be one of asr, mcq, open_qa, got 'qa'"):
        score_results([{"id": "q", "task": "qa"}], "s")
    with pytest.raises(ValueError, match="a asr row needs a string 'reference'"):
        score_results([{"id": "q", "task": "asr", "hypothesis": "x"}], "s")
    with pytest.raises(ValueError, match="no results rows"):
        score_results([], "s")


def test_group_rows_missing_labels():
    assert group_rows([{"labels": {"a": "1"}}, {}], "a") == {"(none)": [1], "1": [0]}
