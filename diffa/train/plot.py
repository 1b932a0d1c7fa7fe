"""The training log (``exp/<stage>/train_log.txt``) and its loss-curve PNG.

Every log line is ``<kind> key=value key=value ...`` (kind ``train`` for the periodic training
statistics, ``valid`` for end-of-epoch validation), e.g.::

    train epoch=1 step=50 loss=2.3125 lr=5.000e-05 grad_norm=0.8123 examples/s=41.2 eta=0:12:31
    valid epoch=1 step=120 loss=2.0311

A resumed run appends again the steps it redoes after its last checkpoint; readers keep the last
line of each step.

Example
-------
>>> import os, tempfile
>>> d = tempfile.mkdtemp()
>>> log = os.path.join(d, "train_log.txt")
>>> for step, loss in ((1, 4.5), (2, 3.25), (3, 2.5)):
...     append_log(log, "train", epoch=1, step=step, loss=loss)
>>> append_log(log, "valid", epoch=1, step=3, loss=2.75)
>>> [r["loss"] for r in read_log(log)["train"]]
[4.5, 3.25, 2.5]
>>> plot_loss(log, os.path.join(d, "loss.png")); os.path.getsize(os.path.join(d, "loss.png")) > 0
True
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Union

from diffa.files import atomic_save

Value = Union[int, float, str]


def format_value(value: Value) -> str:
    """Compact text for one logged value (floats: 4 significant digits).

    Example
    -------
    >>> format_value(0.000123456), format_value(12.0), format_value(3), format_value("0:01:02")
    ('0.0001235', '12', '3', '0:01:02')
    """
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def append_log(path: str, kind: str, **fields: Value) -> None:
    """Append one ``kind key=value ...`` line to the log at ``path``.

    Example
    -------
    >>> import os, tempfile
    >>> log = os.path.join(tempfile.mkdtemp(), "train_log.txt")
    >>> append_log(log, "train", epoch=1, step=10, loss=2.5, eta="0:01:00")
    >>> open(log).read()
    'train epoch=1 step=10 loss=2.5 eta=0:01:00\\n'
    """
    if not kind or " " in kind:
        raise ValueError(f"log kind must be one word, got {kind!r}")
    line = " ".join([kind] + [f"{k}={format_value(v)}" for k, v in fields.items()])
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def _parse(value: str) -> Value:
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def read_log(path: str) -> Dict[str, List[Dict[str, Value]]]:
    """Rows of each kind, ordered by step, keeping the last line logged for a step.

    Lines that are not ``kind key=value ...`` (e.g. a line cut by a crash) are skipped.

    Example
    -------
    >>> import os, tempfile
    >>> log = os.path.join(tempfile.mkdtemp(), "train_log.txt")
    >>> _ = open(log, "w").write("train step=2 loss=3.5\\ntrain step=1 loss=4.5\\ntrain step=2 loss=3.25\\ntrain st")
    >>> [(r["step"], r["loss"]) for r in read_log(log)["train"]]
    [(1, 4.5), (2, 3.25)]
    """
    rows: Dict[str, Dict[int, Dict[str, Value]]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            kind, *pairs = line.split()
            if not pairs or not all("=" in p for p in pairs):
                continue
            row = {k: _parse(v) for k, v in (p.split("=", 1) for p in pairs)}
            if isinstance(row.get("step"), int):
                rows.setdefault(kind, {})[row["step"]] = row
    return {kind: [by_step[s] for s in sorted(by_step)] for kind, by_step in rows.items()}


def loss_keys(rows: List[Dict[str, Value]]) -> List[str]:
    """``loss`` and then the per-task losses (``loss_<task>``) that ``rows`` hold, in that order.

    Example
    -------
    >>> loss_keys([{"step": 1, "loss": 0.5, "loss_mcq": 0.2}, {"step": 2, "loss": 0.4, "loss_asr": 1.5}])
    ['loss', 'loss_asr', 'loss_mcq']
    >>> loss_keys([{"step": 1, "lr": 0.1}])
    []
    """
    keys = {key for row in rows for key, value in row.items() if key.startswith("loss") and isinstance(value, (int, float))}
    return sorted(keys, key=lambda key: (key != "loss", key))


def plot_loss(log_path: str, png_path: str, title: str = "") -> None:
    """Draw training (line) and validation (dots) loss against the optimizer step into a PNG,
    with the per-task losses where the log has them (on a log scale then).

    The PNG is written to a temporary name and renamed.

    Example
    -------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> append_log(os.path.join(d, "log.txt"), "train", step=1, loss=2.5)
    >>> plot_loss(os.path.join(d, "log.txt"), os.path.join(d, "loss.png"))
    >>> open(os.path.join(d, "loss.png"), "rb").read(4)
    b'\\x89PNG'
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_log(log_path)
    fig, ax = plt.subplots(figsize=(7, 4))
    colours = {key: f"C{i}" for i, key in enumerate(loss_keys(rows.get("train", []) + rows.get("valid", [])))}
    for kind, style in (("train", "-"), ("valid", "o--")):
        for key in loss_keys(rows.get(kind, [])):
            points = [(r["step"], r[key]) for r in rows[kind] if isinstance(r.get(key), (int, float))]
            steps, losses = zip(*points)
            thin = {} if key == "loss" else {"lw": 0.8, "ms": 3}
            ax.plot(steps, losses, style, color=colours[key], label=f"{kind} {key}", **thin)
    if any(len(loss_keys(rows.get(kind, []))) > 1 for kind in ("train", "valid")):
        ax.set_yscale("log")  # tasks whose losses differ by orders of magnitude
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(title or os.path.basename(os.path.dirname(os.path.abspath(log_path))))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    try:
        atomic_save(Path(png_path), lambda tmp: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))
    finally:
        plt.close(fig)
