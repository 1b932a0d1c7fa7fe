"""DIFFA = frozen Whisper encoder + semantic/acoustic adapters + LLaDA.

``from diffa.model import DIFFA, DIFFAConfig, import_official``; the pieces live in
``diffa.model.diffa`` (the module), ``.config``, ``.splice`` (batched audio splicing) and
``.official`` (the authors' checkpoints).
"""

from diffa.model.config import DIFFAConfig
from diffa.model.diffa import DIFFA
from diffa.model.official import import_official

__all__ = ["DIFFA", "DIFFAConfig", "import_official"]
