"""Tests of diffa.data.kaldi: map files, atomic writes, feats.scp loading."""
import os

import kaldiio
import numpy as np
import pytest

from diffa.data.kaldi import (
    KeyOrder,
    atomic_write,
    iter_lines,
    load_feats,
    read_map,
    utt2spk_to_spk2utt,
    write_map,
)


def _write_bytes(path, data: bytes) -> str:
    path = str(path)
    with open(path, "wb") as f:
        f.write(data)
    return path


def test_write_map_sorts_in_c_order_and_round_trips(tmp_path):
    path = str(tmp_path / "text")
    mapping = {"b": "x", "B": "upper", "a-1": "tab\tinside", "a_1": "café ü", "a": "HELLO  WORLD"}
    write_map(path, mapping)
    keys = [line.split(" ", 1)[0] for line in open(path, encoding="utf-8")]
    # LC_ALL=C byte order: '-' (0x2d) < '_' (0x5f); upper case before lower case.
    assert keys == ["B", "a", "a-1", "a_1", "b"]
    assert read_map(path) == mapping
    assert not os.path.exists(path + ".tmp")


def test_read_map_value_type(tmp_path):
    path = _write_bytes(tmp_path / "utt2dur", b"u1 1.5\nu2 0.25\n")
    assert read_map(path, value_type=float) == {"u1": 1.5, "u2": 0.25}
    with pytest.raises(ValueError, match=r"utt2dur:1: bad value for 'u1'"):
        read_map(path, value_type=int)


@pytest.mark.parametrize(
    "content, line, message",
    [
        (b"u1 ok\nu2 caf\xe9\n", 2, "not valid UTF-8"),
        (b"u1 a\nu2 b\nu1 c\n", 3, "duplicate key 'u1' (first at line 1)"),
        (b"u1 a\nu3 b\nu2 c\n", 3, "key 'u2' comes after 'u3': the file is not sorted"),
        (b"u1 a\nu2   \n", 2, "key 'u2' has an empty value (an empty transcript?)"),
        (b"u1 a\n\nu2 b\n", 2, "blank line"),
        (b"\xef\xbb\xbfu1 a\n", 1, "starts with a UTF-8 byte-order mark; remove it"),
    ],
)
def test_read_map_errors_name_file_and_line(tmp_path, content, line, message):
    path = _write_bytes(tmp_path / "text", content)
    with pytest.raises(ValueError) as err:
        read_map(path)
    assert str(err.value).startswith(f"{path}:{line}: ")
    assert message in str(err.value)


def test_read_map_crlf_and_allow_empty(tmp_path):
    path = _write_bytes(tmp_path / "text", b"u1 A B\r\nu2\r\n")
    assert read_map(path, allow_empty=True) == {"u1": "A B", "u2": ""}


def test_iter_lines_numbers_lines(tmp_path):
    path = _write_bytes(tmp_path / "f", b"a\nb\n\nc")
    assert list(iter_lines(path)) == [(1, "a"), (2, "b"), (3, ""), (4, "c")]


def test_iter_lines_rejects_a_byte_order_mark(tmp_path):
    path = _write_bytes(tmp_path / "tasks.jsonl", b"\xef\xbb\xbf{}\n")
    with pytest.raises(ValueError) as err:
        list(iter_lines(path))
    assert str(err.value) == (f"{path}:1: starts with a UTF-8 byte-order mark; remove it "
                              f"(e.g. sed -i '1s/^\\xEF\\xBB\\xBF//' {path})")


def test_key_order_accepts_sorted_unique_keys():
    order = KeyOrder("f")
    for line, key in enumerate(["A", "a", "a-b", "a_b", "b"], start=1):
        order.add(key, line)
    with pytest.raises(ValueError, match="f:6: duplicate key 'b' \\(first at line 5\\)"):
        order.add("b", 6)


@pytest.mark.parametrize("key, value", [("a b", "x"), ("", "x"), ("a", ""), ("a", "x\ny")])
def test_write_map_rejects_bad_entries(tmp_path, key, value):
    path = str(tmp_path / "m")
    with pytest.raises(ValueError, match="write_map"):
        write_map(path, {key: value})
    assert not os.path.exists(path) and not os.path.exists(path + ".tmp")


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    path = str(tmp_path / "out")
    write_map(path, {"a": "old"})
    with pytest.raises(RuntimeError):
        with atomic_write(path) as f:
            f.write("a new\n")
            raise RuntimeError("interrupted")
    assert open(path).read() == "a old\n"
    assert not os.path.exists(path + ".tmp")


def test_atomic_write_binary_and_bad_mode(tmp_path):
    path = str(tmp_path / "deep" / "x.bin")
    with atomic_write(path, "wb") as f:
        f.write(b"\x00\x01")
    assert open(path, "rb").read() == b"\x00\x01"
    with pytest.raises(ValueError, match="mode"):
        with atomic_write(path, "a"):
            pass


def test_utt2spk_to_spk2utt():
    utt2spk = {"s2-b": "s2", "s1-a": "s1", "s2-a": "s2", "s1-b": "s1"}
    assert utt2spk_to_spk2utt(utt2spk) == {"s1": "s1-a s1-b", "s2": "s2-a s2-b"}


def test_load_feats_reads_scp_lazily(tmp_path):
    mats = {"u1": np.arange(6, dtype=np.float32).reshape(3, 2), "u2": np.ones((1, 2), np.float32)}
    scp = str(tmp_path / "feats.scp")
    kaldiio.save_ark(str(tmp_path / "feats.ark"), mats, scp=scp)
    feats = load_feats(scp)
    assert sorted(feats) == ["u1", "u2"]
    np.testing.assert_array_equal(feats["u1"], mats["u1"])
    with pytest.raises(FileNotFoundError, match="extract_feats"):
        load_feats(str(tmp_path / "missing.scp"))
    (tmp_path / "bad.scp").write_text(f"u1 {tmp_path}/feats.ark:9\nu2\n")  # a line without its ark
    with pytest.raises(ValueError, match=r"bad\.scp: Invalid line is found: > u2; each line must be '<utt> <ark>:<offset>'"):
        load_feats(str(tmp_path / "bad.scp"))
