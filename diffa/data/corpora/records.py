"""Reading corpus index files (a JSON list or JSON lines) with the line of every record.

Benchmarks and the authors' indices ship either as one JSON array (MMAU's
``mmau-test-mini.json``, MMAR's ``MMAR-meta.json``, the authors' training
indices) or as JSON lines (MMSU's ``question/mmsu.jsonl``, MMAR's
``MMAR-meta.jsonl``). :func:`read_records` reads both and tags every record
with ``file:line`` so that every later error can point at the exact place.
"""
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Union


class CorpusError(ValueError):
    """A corpus file is malformed; the message names the file, line or id and the fix.

    Example
    -------
    >>> try:  # a ValueError: callers that catch ValueError catch it too
    ...     Record({}, "x.jsonl:3").get_str("id")
    ... except ValueError as err:
    ...     print(type(err).__name__, err)
    CorpusError x.jsonl:3: missing field 'id'; fix the index file
    """


@dataclass(frozen=True)
class Record:
    """One JSON object of an index file.

    Arguments
    ---------
    fields : dict
        The decoded JSON object.
    where : str
        ``"<file>:<line>"`` of the line where the object starts.

    Example
    -------
    >>> r = Record({"id": "a1", "question": "Who speaks?"}, "mmau-test-mini.json:12")
    >>> r.fields["question"], r.where
    ('Who speaks?', 'mmau-test-mini.json:12')
    """

    fields: Dict[str, Any]
    where: str

    def get_str(self, key: str, required: bool = True) -> str:
        """Return ``fields[key]`` as a string.

        Arguments
        ---------
        key : str
            Field name.
        required : bool
            If True, a missing, null or non-string value raises
            :class:`CorpusError`; otherwise it yields ``""``.

        Returns
        -------
        str
            The value (``""`` for an optional field that is absent or null).

        Example
        -------
        >>> r = Record({"id": "a1", "question": None}, "x.jsonl:3")
        >>> r.get_str("id"), r.get_str("question", required=False)
        ('a1', '')
        >>> r.get_str("answer")
        Traceback (most recent call last):
        ...
        diffa.data.corpora.records.CorpusError: x.jsonl:3: missing field 'answer' (record id 'a1'); fix the index file
        """
        value = self.fields.get(key)
        if value is None:
            if required:
                raise CorpusError(f"{self.where}: missing field {key!r}{self._id_hint()}; fix the index file")
            return ""
        if not isinstance(value, str):
            raise CorpusError(
                f"{self.where}: field {key!r} must be a string, got {type(value).__name__}{self._id_hint()}"
            )
        return value

    def _id_hint(self) -> str:
        rid = self.fields.get("id", self.fields.get("audio_id"))
        return f" (record id {rid!r})" if rid is not None else ""


def read_records(path: Union[str, Path]) -> List[Record]:
    """Read a JSON array of objects or a JSON-lines file.

    The format is detected from the first non-blank character (``[`` means a
    JSON array). Blank lines in JSON-lines files are skipped.

    Arguments
    ---------
    path : str or Path
        The index file.

    Returns
    -------
    list of Record
        The objects in file order, each with its ``file:line``.

    Raises
    ------
    CorpusError
        On undecodable JSON (naming ``file:line``) or a non-object entry.

    Example
    -------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> p = os.path.join(d, "a.jsonl")
    >>> _ = open(p, "w").write('{"id": "x"}\\n\\n{"id": "y"}\\n')
    >>> [(r.fields["id"], r.where.endswith("a.jsonl:3")) for r in read_records(p)]
    [('x', False), ('y', True)]
    >>> q = os.path.join(d, "b.json")
    >>> _ = open(q, "w").write('[\\n  {"id": "x"},\\n  {"id": "y"}\\n]\\n')
    >>> [r.where.rsplit(":", 1)[1] for r in read_records(q)]
    ['2', '3']
    >>> _ = open(p, "w").write('{"id": "x"}\\n{"id": \\n')
    >>> read_records(p)
    Traceback (most recent call last):
    ...
    diffa.data.corpora.records.CorpusError: .../a.jsonl:2: invalid JSON (Expecting value, column 8); fix or remove ...
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")  # -sig: a byte-order mark (Windows editors) is dropped
    if text.lstrip().startswith("["):
        return _read_array(path, text)
    return _read_lines(path, text)


def _read_lines(path: Path, text: str) -> List[Record]:
    records = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise CorpusError(
                f"{where}: invalid JSON ({err.msg}, column {err.colno}); fix or remove this line"
            ) from None
        records.append(_as_record(obj, where))
    return records


def _read_array(path: Path, text: str) -> List[Record]:
    decoder = json.JSONDecoder()
    lines = _LineCounter(text)
    pos = text.index("[") + 1
    records = []
    while True:
        pos = _skip_space(text, pos)
        if pos < len(text) and text[pos] == "]":
            break
        if records:
            if pos >= len(text) or text[pos] != ",":
                raise CorpusError(f"{path}:{lines.at(pos)}: expected ',' or ']' in the JSON array; fix the file")
            pos = _skip_space(text, pos + 1)
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            raise CorpusError(
                f"{path}:{err.lineno}: invalid JSON ({err.msg}, column {err.colno}); fix the file"
            ) from None
        records.append(_as_record(obj, f"{path}:{lines.at(pos)}"))
        pos = end
    rest = _skip_space(text, pos + 1)
    if rest < len(text):
        raise CorpusError(f"{path}:{lines.at(rest)}: unexpected text after the JSON array; fix the file")
    return records


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


class _LineCounter:
    """Line numbers of non-decreasing offsets into one text, each newline counted once.

    Counting from the top for every record made reading an index quadratic in its size (the
    authors' indices hold up to millions of items).
    """

    def __init__(self, text: str):
        self.text, self.pos, self.line = text, 0, 1

    def at(self, pos: int) -> int:
        self.line += self.text.count("\n", self.pos, pos)
        self.pos = pos
        return self.line


def _as_record(obj: Any, where: str) -> Record:
    if not isinstance(obj, dict):
        raise CorpusError(f"{where}: expected a JSON object, got {type(obj).__name__}; fix the index file")
    return Record(obj, where)
