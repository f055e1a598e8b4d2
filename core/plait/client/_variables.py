"""The variables part of ``PlaitClient`` and ``AsyncPlaitClient`` (base classes of them,
kept in their own module so each stays short). ``plait.variables`` is the call for flows;
these are the routes as they are."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from plait._api import ApiSession, AsyncApiSession
from plait._api._calls import ApiCalls
from plait.variables import _get_call, _list_call, _set_call, _unset_call

__all__ = ["_Variables", "_AsyncVariables"]


class _Variables:
    """Methods of ``PlaitClient`` for variables."""

    _session: ApiSession
    _calls: ApiCalls

    def list_variables(self) -> list[dict[str, Any]]:
        """Every variable by name: ``{id, name, value, tags, created, updated}``."""
        return self._session.call(_list_call(self._calls))

    def get_variable(self, name: str) -> dict[str, Any]:
        """One variable by name.

        Raises:
            plait.client.ApiNotFound: No such variable (code ``variable_not_found``).
        """
        return self._session.call(_get_call(self._calls, name))

    def set_variable(
        self, name: str, value: Any, *, tags: Sequence[str] | None = None, overwrite: bool = False
    ) -> dict[str, Any]:
        """Store ``value`` (JSON) as the variable ``name`` (needs a key of scope ``run``);
        returns it. ``tags`` None keeps an existing variable's tags.

        Raises:
            plait.client.ApiError: It exists and ``overwrite`` is False (409, code
                ``variable_exists``), or the name or value is refused (422).
        """
        return self._session.call(_set_call(self._calls, name, value, None if tags is None else list(tags), overwrite))

    def delete_variable(self, name: str) -> dict[str, Any]:
        """Delete a variable (needs a key of scope ``run``); returns what was deleted.

        Raises:
            plait.client.ApiNotFound: No such variable.
        """
        return self._session.call(_unset_call(self._calls, name))


class _AsyncVariables:
    """Methods of ``AsyncPlaitClient`` for variables (as ``PlaitClient``'s)."""

    _session: AsyncApiSession
    _calls: ApiCalls

    async def list_variables(self) -> list[dict[str, Any]]:
        """Every variable by name: ``{id, name, value, tags, created, updated}``."""
        return await self._session.call(_list_call(self._calls))

    async def get_variable(self, name: str) -> dict[str, Any]:
        """One variable by name.

        Raises:
            plait.client.ApiNotFound: No such variable (code ``variable_not_found``).
        """
        return await self._session.call(_get_call(self._calls, name))

    async def set_variable(
        self, name: str, value: Any, *, tags: Sequence[str] | None = None, overwrite: bool = False
    ) -> dict[str, Any]:
        """Store ``value`` (JSON) as the variable ``name`` (needs a key of scope ``run``);
        returns it. ``tags`` None keeps an existing variable's tags.

        Raises:
            plait.client.ApiError: It exists and ``overwrite`` is False (409, code
                ``variable_exists``), or the name or value is refused (422).
        """
        return await self._session.call(
            _set_call(self._calls, name, value, None if tags is None else list(tags), overwrite))

    async def delete_variable(self, name: str) -> dict[str, Any]:
        """Delete a variable (needs a key of scope ``run``); returns what was deleted.

        Raises:
            plait.client.ApiNotFound: No such variable.
        """
        return await self._session.call(_unset_call(self._calls, name))
