"""utils/parse_options.sh: --foo_bar sets $foo_bar; unknown options, bad booleans and --help."""
import os
import subprocess
from pathlib import Path

import pytest

UTILS = Path(__file__).resolve().parents[2] / "utils"
SCRIPT = """#!/usr/bin/env bash
set -euo pipefail
stage=1            # first stage to run
foo_bar="a b"      # a value with spaces
force=false        # redo everything
help_message="Usage: demo.sh [options] <dir>..."
. {utils}/parse_options.sh
echo "stage=$stage foo_bar=$foo_bar force=$force args=$*"
"""


@pytest.fixture
def demo(tmp_path):
    script = tmp_path / "demo.sh"
    script.write_text(SCRIPT.format(utils=UTILS))
    script.chmod(0o755)

    def run(*args):
        env = dict(os.environ, lower_exported="x")  # exported variables are not options
        return subprocess.run([str(script), *args], capture_output=True, text=True, env=env, timeout=30)

    return run


def test_defaults_and_values(demo):
    assert demo().stdout == "stage=1 foo_bar=a b force=false args=\n"
    result = demo("--stage", "3", "--foo-bar", "x y", "--force=true", "d1", "--not-an-option")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "stage=3 foo_bar=x y force=true args=d1 --not-an-option\n"


def test_double_dash_ends_options(demo):
    assert demo("--stage", "2", "--", "--stage", "5").stdout == "stage=2 foo_bar=a b force=false args=--stage 5\n"


def test_unknown_option_lists_valid_ones(demo):
    result = demo("--stage", "2", "--bogus", "1")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "demo.sh: unknown option --bogus; valid options: --foo_bar --force --stage (see --help)" in result.stderr


@pytest.mark.parametrize("name", ["--help_message", "--lower_exported", "--PATH"])
def test_non_options_are_unknown(demo, name):
    result = demo(name, "x")
    assert result.returncode == 1 and "unknown option" in result.stderr


def test_boolean_takes_true_or_false(demo):
    result = demo("--force", "yes")
    assert result.returncode == 1
    assert "option --force takes true or false, got 'yes'" in result.stderr


def test_missing_value(demo):
    result = demo("--stage")
    assert result.returncode == 1
    assert "option --stage needs a value" in result.stderr


def test_unknown_last_option_without_value_is_named_as_unknown(demo):
    """`run.sh --bogus` must list the valid options, not ask a value for an option that does not exist."""
    result = demo("--bogus")
    assert result.returncode == 1
    assert "unknown option --bogus; valid options: " in result.stderr and "--stage" in result.stderr


def test_help_prints_message_and_options(demo):
    result = demo("--stage", "4", "--help", "--bogus")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "Usage: demo.sh [options] <dir>..."
    assert lines[2].split() == ["--foo_bar", "(a", "b)", "a", "value", "with", "spaces"]
    assert lines[3].split() == ["--force", "(false)", "redo", "everything"]
    assert lines[4].split() == ["--stage", "(4)", "first", "stage", "to", "run"]
    assert len(lines) == 5


def test_run_directly_prints_its_documentation():
    result = subprocess.run([str(UTILS / "parse_options.sh"), "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout.startswith("Turn command-line options into shell variables.")
