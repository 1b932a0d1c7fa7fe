"""What the ``diffa.bin`` entry points share: the command-line parser they start from, the options
a mode ignores, and the one-line error exit."""

import argparse
import signal
import sys
from typing import Callable, List


def entry_point_parser(module: str, doc: str, **options) -> argparse.ArgumentParser:
    """An empty parser for the entry point ``python -m <module>`` whose help is ``doc``.

    The module docstring (with its ``Usage:`` lines and tables) is shown as written: line breaks
    and indentation are kept.

    Arguments
    ---------
    module : str
        The entry point's dotted module name, e.g. ``diffa.bin.decode`` (not ``__name__``: that is
        ``__main__`` under ``python -m``).
    doc : str
        The help text, the entry point's module docstring.
    **options
        Other ``argparse.ArgumentParser`` arguments (e.g. ``allow_abbrev=False``).

    Returns
    -------
    argparse.ArgumentParser
        With no options but ``--help``; the entry point adds its own.

    Example
    -------
    >>> parser = entry_point_parser("diffa.bin.x", "Do x.\\n\\nUsage:\\n  python -m diffa.bin.x --n 3\\n")
    >>> _ = parser.add_argument("--n", type=int)
    >>> print(parser.format_help())
    usage: python -m diffa.bin.x [-h] [--n N]
    <BLANKLINE>
    Do x.
    <BLANKLINE>
    Usage:
      python -m diffa.bin.x --n 3
    ...
    """
    return argparse.ArgumentParser(prog=f"python -m {module}", description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter, **options)


def options_given(parser: argparse.ArgumentParser, args: argparse.Namespace, group: str) -> List[str]:
    """The options of ``parser``'s argument group titled ``group`` that ``args`` sets to other than
    their defaults (to name the options a mode of the program would ignore).

    Example
    -------
    >>> parser = argparse.ArgumentParser()
    >>> extra = parser.add_argument_group("extra")
    >>> _ = extra.add_argument("--n", type=int, default=1); _ = extra.add_argument("--m", default="a")
    >>> options_given(parser, parser.parse_args(["--n", "2", "--m", "a"]), "extra")
    ['--n']
    """
    actions = next(g for g in parser._action_groups if g.title == group)._group_actions
    return [a.option_strings[0] for a in actions if getattr(args, a.dest) != a.default]


def exit_on_sigterm() -> None:
    """Turn SIGTERM (a job runner stopping its jobs, e.g. after Ctrl-C) into ``SystemExit(143)``,
    so that ``finally`` and ``except BaseException`` clean-ups run (a half-written temporary
    directory is removed) instead of the process vanishing mid-write.

    Example
    -------
    >>> import os, signal
    >>> exit_on_sigterm()
    >>> try:
    ...     os.kill(os.getpid(), signal.SIGTERM)
    ... except SystemExit as stop:
    ...     print(stop.code)
    143
    >>> _ = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    """
    def stop(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def error_status(run: Callable[[], None]) -> int:
    """Call ``run()``; a ValueError or OSError (a bad or missing input: the message names the file)
    is printed as one ``ERROR:`` line on stderr instead of a traceback.

    Arguments
    ---------
    run : callable
        The entry point's work.

    Returns
    -------
    int
        The exit status: 0, or 1 after an error.

    Example
    -------
    >>> def work():
    ...     raise FileNotFoundError("nosrc: missing config.json")
    >>> import contextlib, io
    >>> with contextlib.redirect_stderr(io.StringIO()) as err:
    ...     status = error_status(work)
    >>> status, err.getvalue()
    (1, 'ERROR: nosrc: missing config.json\\n')
    """
    try:
        run()
    except (ValueError, OSError) as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    return 0
