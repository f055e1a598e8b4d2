"""The automation evaluator's own process: ``python -m plait.automations._runner``.

The plait server starts one next to itself (``plait.server.services``), so that rendering
templates, calling webhooks and recording actions never compete with the API for the
server's interpreter. Like every service it acts only while it holds its lease
(``automations``) in the store, so across several servers one evaluator runs; on SIGTERM it
finishes the actions under way, records them and gives the lease up. The store is the one
``PLAIT_DATABASE_URL`` names (the server sets it for this process alone). It stops by
itself when the server is gone (killed outright, say).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import uuid

__all__ = ["main", "LEASE", "INTERVAL", "PARENT_VARIABLE"]

LEASE = "automations"
INTERVAL = 0.1  # seconds between passes: an event's actions start within about this long of its commit
PARENT_VARIABLE = "PLAIT_EVALUATOR_PARENT"  # the server's pid, set by the server for this process
_TTL = 10.0  # the lease's time to live: a pass or a renewal may be slow without handing it over

logger = logging.getLogger("plait.server")


def main() -> int:
    """Evaluate automations until SIGTERM or SIGINT; the exit status is 0 after a clean stop."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s:     automations[%(process)d]: %(message)s")
    logger.setLevel(logging.INFO)  # plait's own news; the libraries' chatter stays out
    from plait._masking import mask
    from plait._runs import HOSTNAME
    from plait._store.database import get_database
    from plait._store.leases import acquire_lease, release_lease
    from plait.automations._evaluator import Evaluator
    from plait.exceptions import DatabaseError

    stopping = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stopping.set())
    db = get_database()
    holder = f"{HOSTNAME}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    # a server killed outright must not leave its evaluator behind (it may die before we get here)
    server = int(os.environ.get(PARENT_VARIABLE) or os.getppid())
    evaluator = Evaluator(db)
    held = failing = False
    try:
        while not stopping.is_set():
            if os.getppid() != server:
                logger.warning("the server that started this evaluator is gone; stopping")
                break
            try:
                if acquire_lease(db, LEASE, holder, _TTL):
                    if not held:
                        logger.info("this server (%s, process %d) now evaluates automations", holder, server)
                    held = True
                    evaluator.run_pass()
                elif held:
                    logger.info("another server took over the automations")
                    held = False
                    evaluator.loaded = False  # what it holds in memory may be stale by now
                if failing:
                    logger.info("automations work again")
                failing = False
            except DatabaseError as exc:
                if not failing:  # once per outage
                    logger.warning("automations: %s (retrying every %gs)", exc, INTERVAL)
                failing = True
                time.sleep(1.0)
            except Exception as exc:  # a bug: say so, keep evaluating
                import traceback

                logger.error("automations: a pass failed: %s\n%s", mask(str(exc)), mask(traceback.format_exc()))
                time.sleep(1.0)
            stopping.wait(INTERVAL)
    finally:
        evaluator.close()
        if held:
            try:
                release_lease(db, LEASE, holder)
            except DatabaseError as exc:
                logger.warning("could not release the automations lease: %s", exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
