"""``python -m plait.cli`` runs the ``plait`` command line."""

from plait.cli import main

main()
