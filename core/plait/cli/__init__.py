"""The ``plait`` command line: ``plait version``, ``plait config show``, ``plait flow-run ...``.

Each command is a thin click wrapper over a plain function in ``plait.cli.commands`` that
returns data (tests and scripts call those directly); ``plait.cli._views`` renders it.
Importing this package loads click but never SQLAlchemy or rich: the store is imported
inside the commands that read it, rich only when drawing on a terminal.
"""

from __future__ import annotations

import os
import sys

from plait.cli._app import cli

__all__ = ["cli", "main"]


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``plait`` console script."""
    try:
        cli.main(args=argv, prog_name="plait")
    except BrokenPipeError:
        # `plait flow-run ls | head`: the reader left; exit quietly, not with a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
