"""What the ``scripts/`` share: user errors end in one line on stderr, not a traceback."""

from __future__ import annotations

import sys
from typing import Callable, NoReturn

from .checkpoint import CheckpointError
from .data.prepare import PrepareError
from .weights.imagenet import PretrainedWeightsError

USER_ERRORS = (OSError, ValueError, CheckpointError, PretrainedWeightsError, PrepareError)
"""Bad input: a missing or unreadable file, a wrong key or value (ConfigError, DatasetError,
TFCheckpointError are ValueErrors). Their messages name the file, key or value."""


def run_main(main: Callable[[], object], prog: str) -> NoReturn:
    """Run a script's ``main()`` and exit: 2 with ``prog: error: ...`` on a user error, else its code."""
    try:
        result = main()
    except USER_ERRORS as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(result if isinstance(result, int) else 0)
