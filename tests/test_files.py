"""diffa.files: atomic saves that writers running at once cannot break."""
import os

from diffa.files import atomic_save, atomic_save_text


def test_two_writers_of_one_file_at_once_with_the_same_pid(tmp_path, monkeypatch):
    """Multi-node training: every rank writes the filtered task manifest into the shared work
    directory at once, and processes on two nodes can have the same pid; each write goes through a
    temporary file of its own, so neither breaks the other and none is left behind."""
    path = tmp_path / "tasks.jsonl"
    monkeypatch.setattr(os, "getpid", lambda: 4242)

    def node_a(tmp):
        with open(tmp, "w") as f:
            f.write("a1\n")
            atomic_save_text(path, "b1\nb2\n")  # node b writes the whole file in the meantime
            f.write("a2\n")

    atomic_save(path, node_a)
    assert path.read_text() == "a1\na2\n" and os.listdir(tmp_path) == ["tasks.jsonl"]
