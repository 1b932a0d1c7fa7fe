"""Fixtures of the decoding entry points: the tiny model and test set of tests/decode/conftest.py.

``one_thread`` is not autouse here: the decoding tests ask for it (``pytestmark``).
"""

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("decode_toy_fixtures", Path(__file__).parents[1] / "decode" / "conftest.py")
_toy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_toy)

toy = _toy.toy
one_thread = pytest.fixture(scope="module", name="one_thread")(_toy.single_thread)
