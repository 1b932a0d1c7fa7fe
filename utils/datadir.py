"""Kaldi-style data directories for the utils/ scripts: read, check, select and write them.

A data directory describes one set of utterances, one entry per line, sorted by the first field
(C-locale byte order, which is Python's ``str`` order for UTF-8 text), in UTF-8 files:

=============  ===============================  ==========================================
file           line                             status
=============  ===============================  ==========================================
wav.scp        ``<utt> <audio path>``           required
text           ``<utt> <transcript>``           optional: a set of audio questions needs
                                                none (its references are in tasks.jsonl)
utt2spk        ``<utt> <speaker>``              required
spk2utt        ``<speaker> <utt> <utt> ...``    required; made from utt2spk when written
utt2dur        ``<utt> <seconds>``              optional
tasks.jsonl    a JSON object per line with      optional; sorted by "id"; "utt" must name
               at least "id" and "utt"          an utterance of wav.scp
=============  ===============================  ==========================================

Other files are neither read nor copied by the scripts that write directories. This module uses
the standard library only, so that the scripts run before the diffa package is installed; when
``diffa.data.tasks`` can be imported, its ``validate_task`` also checks each task row.

Example
-------
>>> import os, tempfile
>>> src = os.path.join(tempfile.mkdtemp(), "train")
>>> DataDir(
...     {"wav.scp": {"b": "b.wav", "a": "a.wav"}, "text": {"a": "hi", "b": "yo"},
...      "utt2spk": {"a": "s1", "b": "s1"}},
...     [{"id": f"{u}-asr", "utt": u, "task": "asr", "instruction": "Transcribe.", "answer": t}
...      for u, t in [("b", "yo"), ("a", "hi")]],
... ).write(src)
>>> print(open(os.path.join(src, "spk2utt")).read(), end="")
s1 a b
>>> data, problems = check(src)
>>> print(problems.report().replace(src, "train"))
train/wav.scp:1: a: audio file a.wav does not exist
train/wav.scp:2: b: audio file b.wav does not exist
>>> [row["id"] for row in data.select(["b"]).tasks]
['b-asr']
"""

import codecs
import importlib
import json
import math
import os
import sys

REQUIRED = ("wav.scp", "utt2spk")
UTT_FILES = ("wav.scp", "text", "utt2spk", "utt2dur")
SPK2UTT = "spk2utt"
TASKS = "tasks.jsonl"
VALUE_NAME = {
    "wav.scp": "audio path",
    "text": "transcript",
    "utt2spk": "speaker",
    "utt2dur": "duration",
    SPK2UTT: "utterance list",
}


class Problems:
    """The defects found in data directories, each one line naming file, line and id.

    Arguments
    ---------
    limit : int
        How many messages :meth:`report` lists before counting the rest.

    Example
    -------
    >>> p = Problems(limit=1)
    >>> p.add("d/text", 3, "u1", "empty transcript")
    >>> p.add("d/text", 4, None, "blank line")
    >>> print(p.report())
    d/text:3: u1: empty transcript
    ... and 1 more
    """

    def __init__(self, limit=20):
        self.limit = limit
        self.messages = []

    def add(self, path, lineno, key, what):
        """Record a defect of ``path`` at line ``lineno`` and id ``key`` (either may be None)."""
        where = f"{path}:{lineno}" if lineno else path
        self.messages.append(f"{where}: {key}: {what}" if key is not None else f"{where}: {what}")

    def __len__(self):
        return len(self.messages)

    def report(self):
        """Return at most ``limit`` messages, one per line, then a count of the others.

        Returns
        -------
        str
        """
        lines = self.messages[: self.limit]
        if len(self.messages) > self.limit:
            lines.append(f"... and {len(self.messages) - self.limit} more")
        return "\n".join(lines)


class KeyOrder:
    """Checks that the keys of a file come unique and sorted, reporting the ones that do not.

    Example
    -------
    >>> order, p = KeyOrder("f"), Problems()
    >>> [order.accept(n, k, p) for n, k in enumerate(["a", "c", "b", "c"], 1)]
    [True, True, True, False]
    >>> print(p.report())
    f:3: b: comes after c (not sorted)
    f:4: c: duplicate id (first on line 2)
    """

    def __init__(self, path):
        self.path = path
        self.linenos = {}
        self.previous = None

    def accept(self, lineno, key, problems):
        """Return False for a duplicate key (the first one counts); report unsorted keys.

        Arguments
        ---------
        lineno : int
            Where ``key`` is.
        key : str
            The id on that line.
        problems : Problems
            Where defects go.

        Returns
        -------
        bool
        """
        if key in self.linenos:
            problems.add(self.path, lineno, key, f"duplicate id (first on line {self.linenos[key]})")
            return False
        if self.previous is not None and key < self.previous:
            problems.add(self.path, lineno, key, f"comes after {self.previous} (not sorted)")
        self.previous = key
        self.linenos[key] = lineno
        return True


def read_lines(path, problems, strict=True):
    """Yield ``(line number, line)`` for the decodable, non-blank lines of a UTF-8 text file.

    Lines that are not UTF-8 are reported to ``problems`` and skipped. A UTF-8 byte-order mark
    starting the file is reported and removed, so that the first line is read as it looks.

    Arguments
    ---------
    path : str
        The file.
    problems : Problems
        Where defects go.
    strict : bool
        Also report blank lines (skipped) and lines that end in a carriage return (which is
        removed); with False both pass silently, as for a list of ids.

    Returns
    -------
    iterator of (int, str)
        Line numbers count from 1; lines come without their line end.

    Example
    -------
    >>> import tempfile
    >>> path = tempfile.mktemp()
    >>> _ = open(path, "wb").write(b"\\xef\\xbb\\xbfa 1\\n\\nb \\xff\\n")
    >>> p = Problems()
    >>> list(read_lines(path, p))
    [(1, 'a 1')]
    >>> print(p.report().replace(path, "f"))
    f:1: starts with a UTF-8 byte-order mark; remove it (e.g. sed -i '1s/^\\xEF\\xBB\\xBF//' f)
    f:2: blank line
    f:3: not valid UTF-8 (byte 2 of the line); re-encode the file as UTF-8
    """
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                what = ("starts with a UTF-8 byte-order mark; remove it "
                        f"(e.g. sed -i '1s/^\\xEF\\xBB\\xBF//' {path})")
                problems.add(path, lineno, None, what)
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                line = raw.decode("utf-8").rstrip("\n")
            except UnicodeDecodeError as err:
                what = f"not valid UTF-8 (byte {err.start} of the line); re-encode the file as UTF-8"
                problems.add(path, lineno, None, what)
                continue
            if line.endswith("\r"):
                if strict:
                    problems.add(path, lineno, None, "ends with a carriage return (DOS line end)")
                line = line.rstrip("\r")
            if not line.strip():
                if strict:
                    problems.add(path, lineno, None, "blank line")
                continue
            yield lineno, line


def read_table(path, problems, what="value"):
    """Read a ``<key> <value>`` file, reporting bad lines, duplicates and unsorted keys.

    Arguments
    ---------
    path : str
        The file.
    problems : Problems
        Where defects go: lines starting with whitespace (skipped), empty values (kept as ""),
        duplicate keys (the first one is kept) and keys out of order.
    what : str
        What the value is, for messages ("empty transcript").

    Returns
    -------
    values : dict
        key -> value (the rest of the line without surrounding whitespace), in file order.
    linenos : dict
        key -> line number.

    Example
    -------
    >>> import tempfile
    >>> path = tempfile.mktemp()
    >>> _ = open(path, "w").write("b hello  world\\na x\\nb y\\nc\\n")
    >>> p = Problems()
    >>> read_table(path, p, "transcript")
    ({'b': 'hello  world', 'a': 'x', 'c': ''}, {'b': 1, 'a': 2, 'c': 4})
    >>> print(p.report().replace(path, "f"))
    f:2: a: comes after b (not sorted)
    f:3: b: duplicate id (first on line 1)
    f:4: c: empty transcript
    """
    values = {}
    order = KeyOrder(path)
    for lineno, line in read_lines(path, problems):
        if line[0].isspace():
            problems.add(path, lineno, None, "starts with whitespace (expected '<id> <value>')")
            continue
        fields = line.split(None, 1)
        key, value = fields[0], fields[1].strip() if len(fields) > 1 else ""
        if not order.accept(lineno, key, problems):
            continue
        if not value:
            problems.add(path, lineno, key, f"empty {what}")
        values[key] = value
    return values, order.linenos


def _task_validator():
    """Return ``diffa.data.tasks.validate_task`` when the diffa package is importable, else None."""
    try:
        module = importlib.import_module("diffa.data.tasks")
    except ImportError:
        return None
    return getattr(module, "validate_task", None)


def read_tasks(path, problems):
    """Read a tasks.jsonl manifest: one JSON object per line, with string "id" and "utt".

    Arguments
    ---------
    path : str
        The manifest.
    problems : Problems
        Where defects go: bad JSON, missing "id"/"utt", duplicate or unsorted ids, and whatever
        ``diffa.data.tasks.validate_task`` finds; all those lines are skipped except unsorted ones.

    Returns
    -------
    rows : list of dict
        In file order.
    linenos : dict
        task id -> line number.

    Example
    -------
    >>> import tempfile
    >>> path = tempfile.mktemp()
    >>> row = {"id": "x", "utt": "u", "task": "asr", "instruction": "Transcribe.", "answer": "hi"}
    >>> _ = open(path, "w").write(json.dumps(row) + '\\n{"id": "y"\\n')
    >>> p = Problems()
    >>> read_tasks(path, p)[0] == [row]
    True
    >>> print(p.report().replace(path, "f"))
    f:2: not valid JSON (Expecting ',' delimiter at column 11)
    """
    rows = []
    order = KeyOrder(path)
    validate_task = _task_validator()
    for lineno, line in read_lines(path, problems):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            problems.add(path, lineno, None, f"not valid JSON ({err.msg} at column {err.colno})")
            continue
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in ("id", "utt")):
            problems.add(path, lineno, None, 'expected a JSON object with string "id" and "utt"')
            continue
        if not order.accept(lineno, row["id"], problems):
            continue
        if validate_task is not None:
            try:
                validate_task(row, f"{path}:{lineno}")
            except ValueError as err:
                problems.messages.append(str(err))
                continue
        rows.append(row)
    return rows, order.linenos


def write_lines(path, lines):
    """Write text lines to ``path`` atomically (to ``path.tmp``, then renamed).

    Arguments
    ---------
    path : str
        The file.
    lines : iterable of str
        Lines without their line end.

    Example
    -------
    >>> import tempfile
    >>> path = tempfile.mktemp()
    >>> write_lines(path, ["a 1", "b 2"])
    >>> open(path).read()
    'a 1\\nb 2\\n'
    """
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(line + "\n" for line in lines)
    os.replace(tmp, path)


def spk2utt(utt2spk):
    """Invert utt2spk: speaker -> its utterances in sorted order, speakers sorted.

    Arguments
    ---------
    utt2spk : dict
        utt -> speaker.

    Returns
    -------
    dict
        speaker -> list of utts.

    Example
    -------
    >>> spk2utt({"b": "s2", "c": "s1", "a": "s1"})
    {'s1': ['a', 'c'], 's2': ['b']}
    """
    speakers = {}
    for utt in sorted(utt2spk):
        speakers.setdefault(utt2spk[utt], []).append(utt)
    return dict(sorted(speakers.items()))


class DataDir:
    """The contents of a data directory: its per-utterance tables and its optional tasks.

    Arguments
    ---------
    tables : dict
        file name (an entry of ``UTT_FILES``) -> {utt: value}; the required ones must be there.
    tasks : list of dict, optional
        The rows of tasks.jsonl, or None when the directory has none.
    linenos : dict, optional
        file name -> {id: line number} of the files read (for messages).

    Example
    -------
    >>> d = DataDir({"wav.scp": {"u": "u.wav"}, "text": {"u": "hi"}, "utt2spk": {"u": "s"}})
    >>> d.utts, d.tasks
    (['u'], None)
    """

    def __init__(self, tables, tasks=None, linenos=None):
        missing = [name for name in REQUIRED if name not in tables]
        if missing:
            raise ValueError(f"DataDir: tables {missing} are required, got {sorted(tables)}")
        self.tables = {name: dict(table) for name, table in tables.items()}
        self.tasks = None if tasks is None else list(tasks)
        self.linenos = linenos or {}

    @property
    def utts(self):
        """The sorted utterance ids of wav.scp."""
        return sorted(self.tables["wav.scp"])

    @classmethod
    def load(cls, path, problems):
        """Read the files of a data directory that are there, reporting defects as they are read.

        Arguments
        ---------
        path : str
            The directory.
        problems : Problems
            Where missing required files and the defects of :func:`read_table` and
            :func:`read_tasks` go.

        Returns
        -------
        DataDir
            Missing required files read as empty tables.
        """
        tables, linenos = {}, {}
        for name in UTT_FILES:
            file = os.path.join(path, name)
            if os.path.isfile(file):
                tables[name], linenos[name] = read_table(file, problems, VALUE_NAME[name])
            elif name in REQUIRED:
                problems.add(file, None, None, "missing (every data directory needs it)")
                tables[name], linenos[name] = {}, {}
        tasks = None
        if os.path.isfile(os.path.join(path, TASKS)):
            tasks, linenos[TASKS] = read_tasks(os.path.join(path, TASKS), problems)
        return cls(tables, tasks, linenos)

    def select(self, utts):
        """Return the directory restricted to ``utts`` (tasks follow their utterances).

        Arguments
        ---------
        utts : iterable of str
            The utterances to keep; ids that are not in a table are ignored there.

        Returns
        -------
        DataDir
        """
        keep = set(utts)
        tables = {
            name: {utt: value for utt, value in table.items() if utt in keep}
            for name, table in self.tables.items()
        }
        tasks = None if self.tasks is None else [row for row in self.tasks if row["utt"] in keep]
        return DataDir(tables, tasks)

    def write(self, path):
        """Write every table sorted, spk2utt made from utt2spk, and tasks.jsonl sorted by id.

        Each file is written atomically. Optional files this object lacks (utt2dur,
        tasks.jsonl) are removed from ``path`` so that the directory stays consistent.

        Arguments
        ---------
        path : str
            The directory; created when missing.
        """
        os.makedirs(path, exist_ok=True)
        for name in UTT_FILES:
            file = os.path.join(path, name)
            if name in self.tables:
                table = self.tables[name]
                write_lines(file, (f"{utt} {table[utt]}" for utt in sorted(table)))
            elif os.path.exists(file):
                os.remove(file)
        speakers = spk2utt(self.tables["utt2spk"])
        write_lines(os.path.join(path, SPK2UTT), (f"{s} {' '.join(u)}" for s, u in speakers.items()))
        tasks_file = os.path.join(path, TASKS)
        if self.tasks is not None:
            rows = sorted(self.tasks, key=lambda row: row["id"])
            write_lines(tasks_file, (json.dumps(row, ensure_ascii=False) for row in rows))
        elif os.path.exists(tasks_file):
            os.remove(tasks_file)


def _check_ids(path, data, problems):
    """Report ids of the per-utterance files and tasks that disagree with wav.scp."""
    utts = data.tables["wav.scp"]
    for name, table in data.tables.items():
        file = os.path.join(path, name)
        for utt in sorted(table.keys() - utts.keys(), key=data.linenos[name].get):
            problems.add(file, data.linenos[name][utt], utt, "not in wav.scp")
        for utt in sorted(utts.keys() - table.keys()):
            problems.add(file, None, utt, "missing (it is in wav.scp)")
    tasks = os.path.join(path, TASKS)
    for row in data.tasks or ():
        if row["utt"] not in utts:
            where = data.linenos[TASKS][row["id"]]
            problems.add(tasks, where, row["id"], f"utt {row['utt']} is not in wav.scp")


def _check_spk2utt(path, data, problems):
    """Report speakers whose spk2utt line disagrees with utt2spk."""
    file = os.path.join(path, SPK2UTT)
    if not os.path.isfile(file):
        problems.add(file, None, None, "missing; make it with utils/fix_data_dir.py")
        return
    table, linenos = read_table(file, problems, VALUE_NAME[SPK2UTT])
    expected = spk2utt(data.tables["utt2spk"])
    for speaker in sorted(table.keys() | expected.keys()):
        got = sorted(table.get(speaker, "").split())
        if got != expected.get(speaker, []):
            what = (f"lists {len(got)} utterances, utt2spk gives {len(expected.get(speaker, []))}; "
                    "remake it with utils/fix_data_dir.py")
            problems.add(file, linenos.get(speaker), speaker, what)


def _check_values(path, data, audio, problems):
    """Report pipes and audio files that do not exist (when ``audio``), and durations not > 0."""
    if audio:
        file = os.path.join(path, "wav.scp")
        for utt, wav in data.tables["wav.scp"].items():
            where = data.linenos["wav.scp"][utt]
            if wav.endswith("|"):
                what = f"{wav}: pipe commands are not supported; write the audio to files"
                problems.add(file, where, utt, what)
            elif wav and not os.path.isfile(wav):
                problems.add(file, where, utt, f"audio file {wav} does not exist")
    for utt, value in data.tables.get("utt2dur", {}).items():
        try:
            ok = math.isfinite(float(value)) and float(value) > 0
        except ValueError:
            ok = False
        if value and not ok:
            where = data.linenos["utt2dur"][utt]
            what = f"duration must be > 0 seconds, got {value!r}"
            problems.add(os.path.join(path, "utt2dur"), where, utt, what)


def check(path, audio=True, limit=20):
    """Check a data directory: format, UTF-8, sorted unique ids, consistent files, values, and
    that it has at least one utterance.

    Arguments
    ---------
    path : str
        The directory.
    audio : bool
        Also check that every wav.scp path is an existing file, not a pipe command (relative
        paths are relative to the current directory).
    limit : int
        How many problems the report lists.

    Returns
    -------
    data : DataDir or None
        What was read (None when ``path`` is not a directory).
    problems : Problems
        Empty when the directory is valid.

    Example
    -------
    >>> import tempfile
    >>> check(tempfile.mkdtemp())[1].messages[0]
    '.../wav.scp: missing (every data directory needs it)'
    """
    problems = Problems(limit)
    if not os.path.isdir(path):
        problems.add(path, None, None, "not a directory")
        return None, problems
    data = DataDir.load(path, problems)
    if not data.utts and os.path.isfile(os.path.join(path, "wav.scp")):
        problems.messages.append(
            f"{path} has no utterances: its wav.scp lists none; fill wav.scp and utt2spk "
            "(the corpus's data preparation writes them) or leave the directory out"
        )
    _check_ids(path, data, problems)
    _check_spk2utt(path, data, problems)
    _check_values(path, data, audio, problems)
    return data, problems


def load_valid(path):
    """Load a data directory for splitting or copying, refusing one that :func:`check` rejects.

    Audio files are not checked.

    Arguments
    ---------
    path : str
        The directory.

    Returns
    -------
    DataDir

    Example
    -------
    >>> import tempfile
    >>> load_valid(tempfile.mkdtemp())
    Traceback (most recent call last):
    ...
    ValueError: ... is not a valid data directory (3 problems; run utils/validate_data_dir.py ...
    """
    data, problems = check(path, audio=False)
    if problems:
        raise ValueError(
            f"{path} is not a valid data directory ({len(problems)} problems; run "
            f"utils/validate_data_dir.py {path}, and utils/fix_data_dir.py {path} to keep only "
            f"the utterances every file has):\n{problems.report()}"
        )
    return data


def run_cli(main):
    """Run a script's ``main()``, turning ValueError/OSError into a message and exit status 1.

    Arguments
    ---------
    main : callable
        Returns the exit status.

    Returns
    -------
    int
        The exit status.

    Example
    -------
    >>> def main():
    ...     raise ValueError("data/x: no such set")
    >>> run_cli(main)
    1
    """
    try:
        return main()
    except (ValueError, OSError) as err:
        print(f"{os.path.basename(sys.argv[0])}: {err}", file=sys.stderr)
        return 1
