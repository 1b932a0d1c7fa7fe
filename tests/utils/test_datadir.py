"""utils/datadir.py and the data-dir scripts: their docstring examples, and --help everywhere."""
import doctest
import importlib
import sys
from pathlib import Path

import pytest

UTILS = Path(__file__).resolve().parents[2] / "utils"

SCRIPTS = ("validate_data_dir.py", "fix_data_dir.py", "split_data.py", "subset_data_dir.py",
           "combine_data.py")


@pytest.fixture(scope="module")
def utils_on_path():
    sys.path.insert(0, str(UTILS))
    yield
    sys.path.remove(str(UTILS))


@pytest.mark.parametrize(
    "name", ["datadir", "fix_data_dir", "split_data", "subset_data_dir", "combine_data"]
)
def test_docstring_examples(utils_on_path, name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(run_util, script):
    result = run_util(script, "--help")
    assert result.returncode == 0
    assert "Usage:" in result.stdout
