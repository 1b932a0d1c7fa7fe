"""Tests of diffa.scoring.report: reading results, per-task scoring, tables, scores.json/md and
RESULTS.md."""
import json
import os

import pytest

from diffa.scoring.report import (collect_entries, group_rows, merge_tasks, read_results, resolve_metrics,
                                  score_results, score_results_file, write_results_md, write_scores)

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


def write_lines(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_mmsu_official_and_strict_denominators_and_tables():
    rows = [
        mmsu_row(mmsu_item(1, "Phonology", "Perception", "B"), "The answer is B."),  # right
        mmsu_row(mmsu_item(2, "Phonology", "Perception", "B"), "Answer: B"),  # reads A: wrong
        mmsu_row(mmsu_item(3, "Phonology", "Reasoning", "C"), "I am not sure"),  # unparseable
        mmsu_row(mmsu_item(4, "Semantics", "Reasoning", "A", task="t2"), "A"),  # right
        mmsu_row(mmsu_item(5, "Semantics", "Reasoning", "C", task="t2"), None),  # non-string: unparseable
    ]
    data = score_results(rows, "mmsu").data
    assert data["metric"] == "mmsu"
    assert data["metrics"]["mcq_accuracy"] == pytest.approx(40.0)  # 2 of 5
    assert data["metrics"]["mcq_accuracy_parsed"] == pytest.approx(200 / 3)  # 2 of 3 parsed
    assert (data["mcq"]["unparseable"], data["counts"]["invalid_hypotheses"]) == (2, 1)
    assert data["invalid_hypothesis_ids"] == ["mmsu_5"]
    tables = data["mcq"]["tables"]
    assert list(tables) == ["category", "category+sub-category", "task_name"]
    assert tables["category"]["Phonology"] == {"n": 3, "correct": 1, "accuracy": pytest.approx(100 / 3),
                                               "unparseable": 1, "accuracy_parsed": 50.0}
    assert tables["category+sub-category"]["Phonology / Reasoning"]["accuracy_parsed"] is None
    assert tables["task_name"]["t2"]["accuracy"] == 50.0


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


def test_read_results_truncated_last_line_is_skipped_and_reported(tmp_path):
    path = write_lines(tmp_path / "results.jsonl",
                       '{"id": "a", "hypothesis": "x"}\n\n{"id": "b", "hypothesis": "y"}\n{"id": "c", "hyp')
    res = read_results(path)
    assert res.ids == ["a", "b"]
    assert res.skipped == [{"line": 4, "reason": "truncated last line (no line end, not valid JSON)"}]


def test_read_results_rejects_damage_elsewhere(tmp_path):
    middle = write_lines(tmp_path / "m.jsonl", '{"id": "a"}\n{"id": \n{"id": "c"}\n')
    with pytest.raises(ValueError, match=r"m.jsonl:2: malformed JSON .*re-run decoding"):
        read_results(middle)
    last_complete = write_lines(tmp_path / "l.jsonl", '{"id": "a"}\n{"id"\n')
    with pytest.raises(ValueError, match=r"l.jsonl:2: malformed JSON"):
        read_results(last_complete)
    no_id = write_lines(tmp_path / "n.jsonl", '{"hypothesis": "x"}\n')
    with pytest.raises(ValueError, match=r"n.jsonl:1: a results row must be a JSON object with a string 'id'"):
        read_results(no_id)


def test_read_results_keeps_last_of_repeated_ids(tmp_path):
    path = write_lines(tmp_path / "r.jsonl",
                       '{"id": "a", "failed": true}\n{"id": "b"}\n{"id": "a", "hypothesis": "ok"}\n')
    res = read_results(path)
    assert res.ids == ["b", "a"] and res.rows[1]["hypothesis"] == "ok" and res.duplicates == ["a"]


def test_merge_tasks_fills_rows_and_adds_missing_ids(tmp_path):
    path = write_lines(tmp_path / "r.jsonl", '{"id": "q1", "hypothesis": "soft"}\n')
    res = read_results(path)
    tasks = [{"id": "q1", "utt": "u1", "task": "mcq", "instruction": "?", "answer": "soft",
              "choices": ["loud", "soft"], "gold": 1, "labels": {"asks": "loudness"}},
             {"id": "q2", "utt": "u2", "task": "open_qa", "instruction": "?", "answer": "pink"}]
    assert merge_tasks(res, tasks) == ["q2"]
    assert res.rows[0]["choices"] == ["loud", "soft"] and res.rows[0]["labels"] == {"asks": "loudness"}
    assert res.rows[1] == {"id": "q2", "task": "open_qa", "reference": "pink", "failed": True,
                           "error": "missing from results"}
    data = score_results(res.rows, "mini").data
    assert data["metrics"]["mcq_accuracy"] == 100.0 and data["metrics"]["open_qa_accuracy"] == 0.0
    with pytest.raises(ValueError, match=r"1 ids are not in the set's tasks.jsonl, e.g. \['q1'\]"):
        merge_tasks(read_results(path), tasks[1:])


def test_group_rows_missing_labels():
    assert group_rows([{"labels": {"a": "1"}}, {}], "a") == {"(none)": [1], "1": [0]}


def test_write_scores_files(tmp_path):
    rows = [{"id": "u1", "task": "asr", "hypothesis": "the cat", "reference": "THE HAT"},
            {"id": "q1", "task": "mcq", "hypothesis": "B", "choices": ["x", "y"], "gold": 1}]
    scores = score_results(rows, "dev", metric="auto", styles=("wenet", "whisper_english"))
    written = write_scores(str(tmp_path), scores, {"skipped_lines": [{"line": 9, "reason": "truncated"}]})
    names = sorted(os.path.basename(p) for p in written)
    assert names == ["errs-dev-wenet-char.txt", "errs-dev-wenet.txt", "errs-dev-whisper_english-char.txt",
                     "errs-dev-whisper_english.txt", "judgements-dev.jsonl", "recogs-dev.txt", "scores.json",
                     "scores.md", "wer-summary-dev.txt"]
    data = json.loads((tmp_path / "scores.json").read_text())
    assert data["metrics"]["asr_wer_whisper_english"] == 50.0 and data["skipped_lines"][0]["line"] == 9
    assert set(data["environment"]) == {"git", "versions"} and "torch" in data["environment"]["versions"]
    md = (tmp_path / "scores.md").read_text()
    assert "| wenet | 50.00 | 16.67 | 2 | 1 | 0 | 0 |" in md
    assert "- line 9 skipped: truncated" in md
    judgement = json.loads((tmp_path / "judgements-dev.jsonl").read_text())
    assert judgement == {"id": "q1", "task": "mcq", "hypothesis": "B", "gold": "y", "correct": False,
                         "parsed": True, "letter_mapped": None}
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_score_results_file_with_data_dir(tmp_path):
    data_dir = tmp_path / "data" / "mini"
    data_dir.mkdir(parents=True)
    write_lines(data_dir / "tasks.jsonl",
                '{"id": "a", "utt": "u", "task": "open_qa", "instruction": "?", "answer": "red"}\n'
                '{"id": "b", "utt": "u", "task": "open_qa", "instruction": "?", "answer": "blue"}\n')
    results = write_lines(tmp_path / "results.jsonl", '{"id": "a", "hypothesis": "Red."}\n')
    scores = score_results_file(results, "mini", str(tmp_path / "score"), str(data_dir))
    assert scores.data["missing_ids"] == ["b"] and scores.data["counts"]["failed"] == 1
    assert scores.data["metrics"]["open_qa_accuracy"] == 50.0
    with pytest.raises(ValueError, match="tasks.jsonl does not exist; run data preparation"):
        score_results_file(results, "mini", str(tmp_path / "score"), str(tmp_path))


def make_decode_dir(root, model, tag, sets, settings=None):
    decode_dir = root / "exp" / model / tag
    for set_name, rows in sets.items():
        out = decode_dir / set_name / "score"
        write_scores(str(out), score_results(rows, set_name, styles=("wenet",)))
    if settings is not None:
        (decode_dir / "settings.json").write_text(json.dumps(settings))
    return str(decode_dir)


def test_results_md(tmp_path):
    asr = [{"id": "u1", "task": "asr", "hypothesis": "a b", "reference": "A C"},
           {"id": "u2", "task": "asr", "failed": True, "error": "oom", "reference": "D"}]
    mcq = [{"id": "q", "task": "mcq", "hypothesis": "A", "choices": ["x", "y"], "gold": 0}]
    first = make_decode_dir(tmp_path, "stage3_sft", "decode_a", {"test_clean": asr, "mmsu": mcq},
                            {"model": "exp/stage3_sft", "gen_length": 16, "steps": 16, "factor": 1.0,
                             "git": "abc1234", "versions": {"torch": "2.13.0"}})
    second = make_decode_dir(tmp_path, "stage4_vrpo", "decode_b", {"mmsu": mcq})
    entries = collect_entries([first, second])
    assert [(e.set_name, e.model) for e in entries] == [("mmsu", "exp/stage3_sft"), ("test_clean", "exp/stage3_sft"),
                                                          ("mmsu", "stage4_vrpo")]
    path = tmp_path / "RESULTS.md"
    write_results_md(str(path), entries, title="DIFFA-2")
    text = path.read_text()
    assert text.startswith("# DIFFA-2\n")
    mmsu, test_clean = text.split("## mmsu\n")[1].split("## test_clean\n")
    assert ("| exp/stage3_sft | gen_length=16 steps=16 factor=1.0 | 100.00 | 100.00 | 1 | 0 | 0 | 0 | abc1234 "
            "| torch 2.13.0 | [scores.md](exp/stage3_sft/decode_a/mmsu/score/scores.md) |") in mmsu
    assert "| stage4_vrpo | decode_b | 100.00 | 100.00 | 1 | 0 | 0 | 0 |" in mmsu
    header = test_clean.splitlines()[1]
    assert header.startswith("| model | decode settings | asr_wer | asr_cer | asr_wer_wenet | asr_cer_wenet | rows "
                             "| failed |")
    # a C vs A C plus a failed utterance (D deleted): 2 errors over 3 words
    assert "| 66.67 |" in test_clean and "| 2 | 1 | 0 | 0 |" in test_clean
    with pytest.raises(ValueError, match="no scores.json"):
        collect_entries([str(tmp_path)])
