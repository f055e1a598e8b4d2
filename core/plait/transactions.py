"""Transactions: task runs whose results are committed together, or rolled back together.

    with plait.transaction(key=f"load-{day}") as txn:
        if txn.is_committed():  # done by an earlier run: idempotent
            return
        write_file(rows)
        quality_test()  # raises: write_file's on_rollback hooks undo its side effect

Inside the block, a task run that completes is *staged*: its persisted result (its cache
entry, or the result a retry reuses) is written only when the block ends without an
exception, then its ``on_commit`` hooks run. An exception leaving the block (or
``txn.rollback()``) rolls back instead: nothing staged is written, and the ``on_rollback``
hooks of the staged task runs run, the latest first. Either way the exception goes on.
Runs submitted inside the block are waited for before it commits.

With a ``key``, committing writes a signed record at ``transactions/<key>`` in the result
storage, and a later transaction with the same key starts out committed
(``txn.is_committed()``): that is how a block of work runs at most once. As in Prefect,
the block still runs; checking ``is_committed()`` is the caller's choice.

Hooks are ``fn(txn)`` where ``txn`` is the task run's own part of the transaction
(``StagedTask``: ``task``, ``task_run``, ``value``, and ``get`` of the values ``set`` on
the transaction). A hook that raises is logged; the others still run.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from plait._context import flow_run_var, transaction_var

__all__ = ["Transaction", "TransactionState", "StagedTask", "transaction", "get_transaction"]

logger = logging.getLogger("plait.transactions")

_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:=-]*(/[A-Za-z0-9][A-Za-z0-9._:=-]*)*")
_RECORDS = "transactions"  # where keyed records live in the result storage
_MISSING: Any = object()


class TransactionState(Enum):
    ACTIVE = "ACTIVE"
    COMMITTED = "COMMITTED"
    ROLLED_BACK = "ROLLED_BACK"


class StagedTask:
    """A task run's part of a transaction: what its hooks receive."""

    __slots__ = ("task", "task_run", "value", "parent", "_write")

    def __init__(self, task: Any, task_run: Any, value: Any, parent: Transaction,
                 write: Callable[[], Any] | None) -> None:
        self.task, self.task_run, self.value, self.parent = task, task_run, value, parent
        self._write = write

    @property
    def key(self) -> str | None:
        """The task run's cache key, if it has one."""
        return getattr(self.task_run, "cache_key", None)

    def get(self, name: str, default: Any = _MISSING) -> Any:
        return self.parent.get(name, default)

    def __repr__(self) -> str:
        return f"StagedTask({self.task_run.name!r})"


class Transaction:
    """One ``with plait.transaction():`` block; see the module's docstring."""

    def __init__(self, key: str | None = None, storage: Any = None) -> None:
        if key is not None and (not isinstance(key, str) or not _KEY.fullmatch(key) or ".." in key):
            raise ValueError(
                f"transaction key {key!r} is not usable: use letters, digits and . _ - : = "
                "(a '/' between parts), starting with a letter or digit, e.g. 'load-2026-12-01'"
            )
        self.key = key
        self.state = TransactionState.ACTIVE
        self.parent: Transaction | None = None
        self.staged: list[StagedTask] = []
        self.futures: list[Any] = []  # runs submitted inside the block, waited for at its end
        self._storage_spec = storage
        self._storage: Any = None
        self._values: dict[str, Any] = {}
        self._lock = threading.Lock()  # tasks on other threads stage concurrently
        self._token: Any = None
        self._committed_before = False
        self._nested: list[Transaction] = []  # keyed blocks inside, whose records this commit writes
        self.staged_runs: list[str] = []  # ids of the task runs it committed

    # -- what a flow body uses -------------------------------------------------------------
    def is_committed(self) -> bool:
        return self.state is TransactionState.COMMITTED or self._committed_before

    def is_rolled_back(self) -> bool:
        return self.state is TransactionState.ROLLED_BACK

    def is_active(self) -> bool:
        return self.state is TransactionState.ACTIVE

    def set(self, name: str, value: Any) -> None:
        """Keep ``value`` under ``name`` for the hooks (and nested transactions) to ``get``."""
        self._values[name] = value

    def get(self, name: str, default: Any = _MISSING) -> Any:
        """A value ``set`` on this transaction or one around it."""
        txn: Transaction | None = self
        while txn is not None:
            if name in txn._values:
                return txn._values[name]
            txn = txn.parent
        if default is not _MISSING:
            return default
        raise KeyError(f"transaction has no value {name!r}; set it with txn.set({name!r}, value) "
                       f"or pass a default to get()")

    def rollback(self) -> bool:
        """Roll back now (as an exception would): nothing staged is written; the staged task
        runs' ``on_rollback`` hooks run, the latest first. False if already settled."""
        with self._lock:
            if self.state is not TransactionState.ACTIVE:
                return False
            self.state = TransactionState.ROLLED_BACK
            staged, self.staged = self.staged, []
        for child in reversed(staged):
            _run_hooks(child, "on_rollback")
        return True

    # -- what the engine uses --------------------------------------------------------------
    def stage(self, task: Any, task_run: Any, value: Any, write: Callable[[], Any] | None) -> None:
        """A task run completed inside the block: keep its result's ``write`` for the commit."""
        child = StagedTask(task, task_run, value, self, write)
        with self._lock:
            if self.state is TransactionState.ACTIVE:
                self.staged.append(child)
                return
            settled = self.state
        # a run that outlived its block follows the block's outcome
        logger.warning("task run %r finished after its transaction ended %s", task_run.name, settled.value.lower())
        if settled is TransactionState.COMMITTED:
            _commit_child(child)
        else:
            _run_hooks(child, "on_rollback")

    # -- the block -------------------------------------------------------------------------
    def __enter__(self) -> Transaction:
        self.parent = transaction_var.get()
        if self.key is not None:
            self._committed_before = self._record_exists()
        self._token = transaction_var.set(self)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        try:
            if exc is None:
                exc = self._wait_for_runs()
            if exc is not None:
                self.rollback()
                return
            if self.state is not TransactionState.ACTIVE:  # rolled back by the body
                return
            if self.parent is not None and self.parent.is_active():
                self._hand_to_parent()
            else:
                self._commit()
        finally:
            transaction_var.reset(self._token)

    def _wait_for_runs(self) -> BaseException | None:
        for future in list(self.futures):
            try:
                future.wait()
            except BaseException as exc:  # interrupted while waiting: roll back
                return exc
        return None

    def _hand_to_parent(self) -> None:
        """A nested block that ends well commits with the one around it."""
        with self._lock:
            staged, self.staged = self.staged, []
            self.state = TransactionState.COMMITTED
        self.staged_runs = [c.task_run.id for c in staged]
        parent = self.parent
        assert parent is not None
        with parent._lock:
            parent.staged.extend(staged)
            parent._nested.extend((*self._nested, self))

    def _commit(self) -> None:
        with self._lock:
            staged = list(self.staged)
        try:
            for child in staged:
                if child._write is not None:
                    child._write()
                    child._write = None
            self.staged_runs = [c.task_run.id for c in staged]
            for txn in (*self._nested, self):
                if txn.key is not None and not txn._committed_before:
                    txn._write_record(txn.staged_runs)
        except BaseException:
            self.rollback()  # a result that cannot be written: nothing counts as committed
            raise
        with self._lock:
            self.state = TransactionState.COMMITTED
            self.staged = []
        for child in staged:
            _run_hooks(child, "on_commit")

    # -- keyed records ---------------------------------------------------------------------
    def storage(self) -> Any:
        """Where keyed records go: the given storage, else the flow's result storage."""
        if self._storage is None:
            from plait.results import resolve_storage

            spec = self._storage_spec
            if spec is None:
                ctx = flow_run_var.get()
                spec = ctx.flow.options.result_storage if ctx is not None else None
            self._storage = resolve_storage(spec)
        return self._storage

    def _record_exists(self) -> bool:
        from plait.results import ResultMissing, ResultRefused, read_result

        try:
            read_result(self.storage(), f"{_RECORDS}/{self.key}")
        except ResultMissing:
            return False
        except ResultRefused as exc:  # never trusted: treat as absent, and say so
            logger.warning("transaction %r: %s; running it as not committed", self.key, exc)
            return False
        return True

    def _write_record(self, task_runs: list[str]) -> None:
        from plait.results import write_result

        ctx = flow_run_var.get()
        record = {
            "key": self.key,
            "committed": datetime.now(UTC).isoformat(),
            "flow_run_id": ctx.flow_run.id if ctx is not None else None,
            "task_runs": task_runs,
        }
        write_result(self.storage(), f"{_RECORDS}/{self.key}", record, "json", owner=f"transaction {self.key!r}")

    def __repr__(self) -> str:
        return f"Transaction(key={self.key!r}, state={self.state.value}, staged={len(self.staged)})"


def transaction(key: str | None = None, *, storage: Any = None) -> Transaction:
    """A block whose task runs commit together; see the module's docstring.

    Args:
        key: Makes the block idempotent: once committed, a transaction with this key
            starts out committed. Letters, digits and ``. _ - : =``, parts joined by ``/``.
        storage: Where the keyed record goes (a path, URL or storage block); default: the
            flow's result storage.
    """
    return Transaction(key, storage)


def get_transaction() -> Transaction | None:
    """The innermost transaction around the current code, if any."""
    current: Transaction | None = transaction_var.get()
    return current


def _commit_child(child: StagedTask) -> None:
    try:
        if child._write is not None:
            child._write()
            child._write = None
    except Exception as exc:
        logger.error("the result of task run %r could not be written: %s", child.task_run.name, exc)
        return
    _run_hooks(child, "on_commit")


def _run_hooks(child: StagedTask, option: str) -> None:
    for hook in getattr(child.task.options, option, ()):
        try:
            hook(child)
        except Exception as exc:
            from plait._engine import describe_error

            name = getattr(hook, "__qualname__", None) or repr(hook)
            child.task.run_logger(child.task_run).error(
                "%s hook %s raised %s", option, name, describe_error(exc),
                exc_info=(type(exc), exc, exc.__traceback__),
            )
