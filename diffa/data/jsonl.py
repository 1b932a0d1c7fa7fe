"""Validated JSON-lines manifests: one JSON object per line, lines sorted by a unique ``id``.

The manifests of :mod:`diffa.data.tasks` (``tasks.jsonl``) and :mod:`diffa.data.pairs`
(``pairs.jsonl``) share this layout; each module documents its own keys and passes its row
validator to :func:`read_jsonl` and :func:`write_jsonl`. The checks here are the pieces those
validators share: the allowed and required keys (:func:`check_keys`), non-empty strings
(:func:`check_text`) and the optional ``labels`` object (:func:`check_labels`).

Files are UTF-8, one JSON object per line, sorted by ``id`` in code-point order (the same as
``LC_ALL=C sort`` on UTF-8). :func:`read_jsonl` validates every line and names ``file:line`` in
each error; :func:`write_jsonl` validates, rejects duplicate ids, sorts by id and writes
atomically with the keys in schema order.

Example
-------
>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "names.jsonl")
>>> def validate(row, where):
...     check_keys(row, where, fields=("id", "name"), required=("id",))
...     check_text(row, "id", where, token=True)
>>> write_jsonl(path, [{"name": "b", "id": "2"}, {"id": "1"}], validate, fields=("id", "name"))
>>> print(open(path).read(), end="")
{"id": "1"}
{"id": "2", "name": "b"}
>>> [row["id"] for row in read_jsonl(path, validate)]
['1', '2']
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Sequence, Tuple

from diffa.data.kaldi import KeyOrder, iter_lines
from diffa.files import atomic_write

Validator = Callable[[Any, str], None]


def check_keys(row: Any, where: str, fields: Sequence[str], required: Sequence[str]) -> None:
    """Raise ValueError unless ``row`` is a dict with keys among ``fields`` and all ``required``.

    Arguments
    ---------
    row : Any
        The decoded JSON value of one line.
    where : str
        Where the row comes from (``"data/train/tasks.jsonl:12"``); every message starts with it.
    fields : sequence of str
        The allowed keys, in schema order (the order the message lists them in).
    required : sequence of str
        The keys every row must have.

    Example
    -------
    >>> check_keys({"id": "a"}, "x.jsonl:1", fields=("id", "name"), required=("id",))
    >>> check_keys({"id": "a", "nmae": "b"}, "x.jsonl:2", fields=("id", "name"), required=("id",))
    Traceback (most recent call last):
    ...
    ValueError: x.jsonl:2: unknown key(s) ['nmae']; allowed keys: ['id', 'name']
    >>> check_keys(["a"], "x.jsonl:3", fields=("id",), required=("id",))
    Traceback (most recent call last):
    ...
    ValueError: x.jsonl:3: expected a JSON object, got list
    """
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
    unknown = sorted(set(row) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed keys: {list(fields)}")
    missing = [key for key in required if key not in row]
    if missing:
        raise ValueError(f"{where}: missing required key(s) {missing}")


def check_text(row: Mapping, key: str, where: str, token: bool = False) -> None:
    """Raise ValueError unless ``row[key]`` is a non-empty string (without whitespace if ``token``).

    Arguments
    ---------
    row : Mapping
        The row; it must hold ``key``.
    key : str
        The key to check.
    where : str
        Where the row comes from; every message starts with it.
    token : bool
        Also reject whitespace inside the value (ids).

    Example
    -------
    >>> check_text({"answer": "a dog"}, "answer", "x.jsonl:1")
    >>> check_text({"id": "a b"}, "id", "x.jsonl:2", token=True)
    Traceback (most recent call last):
    ...
    ValueError: x.jsonl:2: 'id' must not contain whitespace, got 'a b'
    >>> check_text({"answer": " "}, "answer", "x.jsonl:3")
    Traceback (most recent call last):
    ...
    ValueError: x.jsonl:3: 'answer' must be a non-empty string, got ' '
    """
    value = row[key]
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: '{key}' must be a non-empty string, got {value!r}")
    if token and any(char.isspace() for char in value):
        raise ValueError(f"{where}: '{key}' must not contain whitespace, got {value!r}")


def check_labels(row: Mapping, where: str) -> None:
    """Raise ValueError unless the optional ``row["labels"]`` is an object of string -> string.

    Arguments
    ---------
    row : Mapping
        The row; a row without ``labels`` passes.
    where : str
        Where the row comes from; every message starts with it.

    Example
    -------
    >>> check_labels({"labels": {"gender": "female"}}, "x.jsonl:1")
    >>> check_labels({}, "x.jsonl:2")
    >>> check_labels({"labels": {"beeps": 3}}, "x.jsonl:3")
    Traceback (most recent call last):
    ...
    ValueError: x.jsonl:3: 'labels' must be an object of string -> string, got {'beeps': 3}
    """
    labels = row.get("labels", {})
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise ValueError(f"{where}: 'labels' must be an object of string -> string, got {labels!r}")


def read_jsonl(path: str, validate: Validator) -> List[Dict[str, Any]]:
    """Read a JSON-lines manifest, validating each line and checking its ids are sorted and unique.

    Arguments
    ---------
    path : str
        The manifest.
    validate : callable
        ``validate(row, where)`` raises ValueError for a bad row; ``where`` is ``"path:line"``.
        It runs before the row's ``id`` is checked for order, so it must make sure there is one.

    Returns
    -------
    list of dict: the decoded rows, in file order.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "x.jsonl")
    >>> validate = lambda row, where: check_keys(row, where, fields=("id",), required=("id",))
    >>> _ = open(path, "w").write('{"id": "a"}\\n{"id": "b"}\\n')
    >>> read_jsonl(path, validate)
    [{'id': 'a'}, {'id': 'b'}]
    >>> _ = open(path, "w").write('{"id": "a"}\\n{"id": "b"\\n')
    >>> read_jsonl(path, validate)
    Traceback (most recent call last):
    ...
    ValueError: /...x.jsonl:2: malformed JSON (Expecting ',' delimiter at column 11);
    each line must be one complete JSON object
    """
    rows = []
    order = KeyOrder(path)
    for number, row in iter_json_lines(path):
        validate(row, f"{path}:{number}")
        order.add(row["id"], number)
        rows.append(row)
    return rows


def iter_json_lines(path: str) -> Iterator[Tuple[int, Any]]:
    """Yield ``(line_number, decoded_value)`` of each line of a JSON-lines file, in file order.

    The values are not validated; unlike :func:`read_jsonl`, any order is allowed. Raises
    ValueError naming ``path:line`` at the first line that is not one complete JSON value (or
    not UTF-8, see :func:`diffa.data.kaldi.iter_lines`).

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "q.jsonl")
    >>> _ = open(path, "w").write('{"b": 1}\\n[2]\\n')
    >>> list(iter_json_lines(path))
    [(1, {'b': 1}), (2, [2])]
    """
    for number, line in iter_lines(path):
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{path}:{number}: malformed JSON ({err.msg} at column {err.colno}); each line must be "
                "one complete JSON object"
            ) from None


def write_jsonl(
    path: str, rows: Iterable[Mapping[str, Any]], validate: Validator, fields: Sequence[str]
) -> None:
    """Validate rows, reject duplicate ids, sort by id and write a JSON-lines file atomically.

    Arguments
    ---------
    path : str
        Destination file.
    rows : iterable of Mapping
        The rows; each must pass ``validate`` and have a unique ``id``.
    validate : callable
        ``validate(row, where)`` raises ValueError for a bad row; ``where`` is
        ``"row <index> (id <id>)"``.
    fields : sequence of str
        The keys in the order they are written (keys a row lacks are left out).

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "x.jsonl")
    >>> validate = lambda row, where: check_text(row, "id", where, token=True)
    >>> write_jsonl(path, [{"id": "b"}, {"id": "a"}], validate, fields=("id",))
    >>> open(path).read()
    '{"id": "a"}\\n{"id": "b"}\\n'
    >>> write_jsonl(path, [{"id": "a"}, {"id": "a"}], validate, fields=("id",))
    Traceback (most recent call last):
    ...
    ValueError: row 1: duplicate id 'a' (also row 0)
    >>> write_jsonl(path, [{"id": ""}], validate, fields=("id",))
    Traceback (most recent call last):
    ...
    ValueError: row 0 (id ''): 'id' must be a non-empty string, got ''
    """
    rows = [dict(row) for row in rows]
    first: Dict[Any, int] = {}
    for index, row in enumerate(rows):
        validate(row, f"row {index} (id {row.get('id')!r})")
        if row["id"] in first:
            raise ValueError(
                f"row {index}: duplicate id '{row['id']}' (also row {first[row['id']]})"
            )
        first[row["id"]] = index
    rows.sort(key=lambda row: row["id"])
    with atomic_write(path) as f:
        for row in rows:
            ordered = {key: row[key] for key in fields if key in row}
            f.write(json.dumps(ordered, ensure_ascii=False) + "\n")
