"""Tests of diffa.train.plot: the log format, resumed logs, the PNG."""

import pytest

from diffa.train.plot import append_log, format_value, plot_loss, read_log


def test_log_round_trip_keeps_the_last_line_of_a_redone_step(tmp_path):
    log = str(tmp_path / "train_log.txt")
    for step, loss in ((1, 5.5), (2, 4.25), (3, 3.5)):
        append_log(log, "train", epoch=1, step=step, loss=loss, lr=1e-4, eta="0:00:10")
    append_log(log, "train", epoch=1, step=3, loss=3.75, lr=1e-4, eta="0:00:09")  # after a resume
    append_log(log, "valid", epoch=1, step=3, loss=3.125)
    with open(log, "a") as f:
        f.write("train epoch=1 ste")  # a line cut by a crash
    rows = read_log(log)
    assert [r["loss"] for r in rows["train"]] == [5.5, 4.25, 3.75]
    assert rows["train"][0] == {"epoch": 1, "step": 1, "loss": 5.5, "lr": 1e-4, "eta": "0:00:10"}
    assert rows["valid"] == [{"epoch": 1, "step": 3, "loss": 3.125}]


def test_png_is_written_atomically(tmp_path):
    log = str(tmp_path / "train_log.txt")
    append_log(log, "train", step=1, loss=2.5)
    append_log(log, "train", step=2, loss=1.5)
    png = tmp_path / "loss.png"
    plot_loss(log, str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "loss.png.tmp").exists()


def test_bad_kind_and_value_format():
    with pytest.raises(ValueError, match="one word"):
        append_log("unused", "two words", step=1)
    assert format_value(1234567.0) == "1.235e+06"
