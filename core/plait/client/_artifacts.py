"""The artifacts part of ``PlaitClient`` and ``AsyncPlaitClient`` (base classes of them, kept
in their own module so each stays short). Flows make artifacts with ``plait.artifacts``
(they travel as recorder records); these read them back."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from plait._api import ApiSession, AsyncApiSession
from plait._api._calls import ApiCalls
from plait._api._core import Call, Page, as_dict, as_list, query, segment

__all__ = ["_Artifacts", "_AsyncArtifacts", "artifacts_call", "artifact_call", "artifact_versions_call"]


def _limit(value: int | None) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"limit must be a whole number >= 1, got {value!r}")
    return value


def artifacts_call(
    calls: ApiCalls,
    *,
    key: str | None = None,
    flow_run: str | None = None,
    task_run: str | None = None,
    type: str | None = None,  # noqa: A002 - the field's name
    latest: bool | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call[Page[dict[str, Any]]]:
    """``GET /artifacts``: one page, newest first."""
    params = query(key=key, flow_run_id=flow_run, task_run_id=task_run, type=type, latest=latest,
                   limit=_limit(limit), cursor=cursor)
    return calls.page_call("/artifacts", as_dict, params)


def artifact_call(calls: ApiCalls, artifact_id: str) -> Call[dict[str, Any]]:
    """``GET /artifacts/{id}``."""
    return calls.call("GET", f"/artifacts/{segment(artifact_id, 'artifact_id')}", as_dict)


def artifact_versions_call(calls: ApiCalls, key: str, limit: int | None = None) -> Call[list[dict[str, Any]]]:
    """``GET /artifacts/key/{key}``: every version, newest first."""
    return calls.call("GET", f"/artifacts/key/{segment(key, 'key')}", as_list, params=query(limit=_limit(limit)))


class _Artifacts:
    """Methods of ``PlaitClient`` for artifacts."""

    _session: ApiSession
    _calls: ApiCalls

    def artifacts(
        self,
        *,
        key: str | None = None,
        flow_run: str | None = None,
        task_run: str | None = None,
        type: str | None = None,  # noqa: A002
        latest: bool | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[dict[str, Any]]:
        """One page of artifacts, newest first: ``{id, key, type, description, data,
        flow_run_id, task_run_id, created, updated}`` each (large ``data`` cut).

        Args:
            key: Only this key's versions.
            flow_run: Only those made in this flow run.
            task_run: Only those made in this task run.
            type: Only this type (markdown, table, link, progress).
            latest: Only each key's newest version (default: true unless a run is named).
            limit: Items per page.
            cursor: ``next_cursor`` of the previous page.
        """
        return self._session.call(artifacts_call(self._calls, key=key, flow_run=flow_run, task_run=task_run,
                                                 type=type, latest=latest, limit=limit, cursor=cursor))

    def iter_artifacts(
        self,
        *,
        key: str | None = None,
        flow_run: str | None = None,
        task_run: str | None = None,
        type: str | None = None,  # noqa: A002
        latest: bool | None = None,
        page_size: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every artifact matching the filters (as ``artifacts``), newest first, page after page."""
        return self._session.items(artifacts_call(self._calls, key=key, flow_run=flow_run, task_run=task_run,
                                                  type=type, latest=latest, limit=page_size))

    def artifact(self, artifact_id: str) -> dict[str, Any]:
        """One artifact whole, by id.

        Raises:
            plait.client.ApiNotFound: No such artifact (code ``artifact_not_found``).
        """
        return self._session.call(artifact_call(self._calls, artifact_id))

    def artifact_versions(self, key: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        """Every version of an artifact key, newest first, whole.

        Raises:
            plait.client.ApiNotFound: The key has no artifact (code ``artifact_not_found``).
        """
        return self._session.call(artifact_versions_call(self._calls, key, limit))


class _AsyncArtifacts:
    """Methods of ``AsyncPlaitClient`` for artifacts (as ``PlaitClient``'s)."""

    _session: AsyncApiSession
    _calls: ApiCalls

    async def artifacts(
        self,
        *,
        key: str | None = None,
        flow_run: str | None = None,
        task_run: str | None = None,
        type: str | None = None,  # noqa: A002
        latest: bool | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[dict[str, Any]]:
        """One page of artifacts, newest first (as ``PlaitClient.artifacts``)."""
        return await self._session.call(artifacts_call(self._calls, key=key, flow_run=flow_run, task_run=task_run,
                                                       type=type, latest=latest, limit=limit, cursor=cursor))

    def iter_artifacts(
        self,
        *,
        key: str | None = None,
        flow_run: str | None = None,
        task_run: str | None = None,
        type: str | None = None,  # noqa: A002
        latest: bool | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every artifact matching the filters, newest first, page after page."""
        return self._session.items(artifacts_call(self._calls, key=key, flow_run=flow_run, task_run=task_run,
                                                  type=type, latest=latest, limit=page_size))

    async def artifact(self, artifact_id: str) -> dict[str, Any]:
        """One artifact whole, by id (as ``PlaitClient.artifact``)."""
        return await self._session.call(artifact_call(self._calls, artifact_id))

    async def artifact_versions(self, key: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        """Every version of an artifact key, newest first (as ``PlaitClient.artifact_versions``)."""
        return await self._session.call(artifact_versions_call(self._calls, key, limit))
