"""``DbtCliProfile``: the dbt profile a run uses, rendered into a private profiles.yml.

A profile is either generated from a target configuration block (DuckDB, PostgreSQL,
Snowflake) or taken from an existing ``profiles.yml``. A generated file lives in a fresh
directory (mode 0700, the file 0600) that exists only while one dbt command runs; it is the
only place secrets are written in clear.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Union

import yaml
from pydantic import Field, model_validator

from plait.blocks import Block
from plait_dbt.exceptions import DbtProfileError
from plait_dbt.targets import TARGET_CONFIG_CLASSES, DbtTargetConfigs

__all__ = ["DbtCliProfile", "TargetConfigs"]

TargetConfigs = Union[TARGET_CONFIG_CLASSES]  # type: ignore[valid-type]  # noqa: UP007 - a union built from a tuple at run time
"""Any target configuration block: DuckDbTargetConfigs | PostgresTargetConfigs | SnowflakeTargetConfigs."""

_JINJA = ("{{", "{%", "{#")


def _literal(value: Any) -> Any:
    """dbt renders profiles.yml with Jinja: keep a secret holding ``{{`` from being evaluated."""
    if isinstance(value, str) and any(mark in value for mark in _JINJA):
        return "{% raw %}" + value + "{% endraw %}"
    return value


class DbtCliProfile(Block):
    """A dbt profile: its name, the target to use, and where that target points.

    Give ``target_configs`` (a DuckDbTargetConfigs, PostgresTargetConfigs or
    SnowflakeTargetConfigs block; plait writes a private profiles.yml for each run), or
    ``existing_profiles_yml`` (the path of a profiles.yml you maintain), not both.
    """

    block_type_slug: ClassVar[str] = "dbt-cli-profile"
    block_type_name: ClassVar[str] = "dbt CLI Profile"
    code_example: ClassVar[str] = """\
from plait_dbt import DbtCliProfile, DuckDbTargetConfigs, dbt_run

DbtCliProfile(
    name="jaffle", target="dev",
    target_configs=DuckDbTargetConfigs(path="warehouse.duckdb", schema_name="analytics"),
).save("jaffle-dev")

profile = DbtCliProfile.load("jaffle-dev")
print(profile.profiles_yml())          # secrets shown as **********
dbt_run("build", project_dir="jaffle", profile=profile)
"""

    name: str = Field(min_length=1, description="Profile name: the `profile:` of dbt_project.yml.")
    target: str | None = Field(
        default=None,
        min_length=1,
        description="Name of the target (the output) to use. Default: 'dev' for a generated profile, the file's "
        "own `target:` for existing_profiles_yml.",
    )
    target_configs: TargetConfigs | None = Field(  # type: ignore[valid-type]
        default=None,
        description="Where the target points: a DuckDbTargetConfigs, PostgresTargetConfigs or "
        "SnowflakeTargetConfigs block. Instead of existing_profiles_yml.",
    )
    existing_profiles_yml: str | None = Field(
        default=None,
        description="Path of an existing profiles.yml (or of the directory holding it) to use as it is, "
        "instead of target_configs.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> DbtCliProfile:
        if self.target_configs is not None and self.existing_profiles_yml:
            raise ValueError(
                "give either target_configs or existing_profiles_yml, not both: target_configs generates "
                "the profile, existing_profiles_yml points at one you maintain"
            )
        if self.target_configs is None and not self.existing_profiles_yml:
            kinds = ", ".join(cls.__name__ for cls in TARGET_CONFIG_CLASSES)
            raise ValueError(
                f"target_configs is required ({kinds}), or give existing_profiles_yml, the path of a profiles.yml"
            )
        return self

    def __repr__(self) -> str:
        # What a run records as the `profile` parameter: the saved block's name, never a
        # truncated dump of its fields.
        if self._document_name:
            return f"DbtCliProfile.load({self._document_name!r})"
        where = type(self.target_configs).__name__ if self.target_configs is not None else "existing_profiles_yml"
        return f"DbtCliProfile(name={self.name!r}, target={self.target!r}, {where})"

    @property
    def target_name(self) -> str | None:
        """The target dbt is told to use (None: the existing profiles.yml's default)."""
        if self.target:
            return self.target
        return "dev" if self.target_configs is not None else None

    # -- rendering -----------------------------------------------------------------------
    def profile_dict(self, reveal_secrets: bool = False) -> dict[str, Any]:
        """``{name: {"target": target, "outputs": {target: {...}}}}``, the profiles.yml content;
        secrets are ``**********`` unless ``reveal_secrets``.

        Raises:
            DbtProfileError: The profile comes from ``existing_profiles_yml`` (read that file),
                or the target cannot be rendered.
        """
        configs = self._configs()
        output = configs.target_dict(reveal_secrets=reveal_secrets)
        if reveal_secrets:
            output = {key: _literal(value) for key, value in output.items()}
        target = self.target_name
        return {self.name: {"target": target, "outputs": {target: output}}}

    def profiles_yml(self, reveal_secrets: bool = False) -> str:
        """The generated profiles.yml as text (secrets masked unless ``reveal_secrets``)."""
        return yaml.safe_dump(self.profile_dict(reveal_secrets=reveal_secrets), sort_keys=False)

    def secret_values(self) -> list[str]:
        """Clear values of the secrets a generated profiles.yml holds (to mask them in logs)."""
        if self.target_configs is None:
            return []
        return self.target_configs.secret_values()

    def _configs(self) -> DbtTargetConfigs:
        if self.target_configs is None:
            raise DbtProfileError(
                f"profile {self.name!r} comes from existing_profiles_yml ({self.existing_profiles_yml}); "
                "there is nothing to render"
            )
        return self.target_configs

    # -- one run's profiles directory ------------------------------------------------------
    @contextlib.contextmanager
    def profiles_dir(self) -> Iterator[Path]:
        """A directory holding the profiles.yml for one dbt command; removed on exit.

        A generated profile is written into a new private directory (mode 0700, file 0600).
        ``existing_profiles_yml`` is used in place (a file not named profiles.yml is copied
        into a private directory under that name).

        Raises:
            DbtProfileError: The adapter is not installed, or existing_profiles_yml is
                missing or does not define this profile.
        """
        if self.target_configs is not None:
            self.target_configs.check_adapter()
            text = self.profiles_yml(reveal_secrets=True)
            with _private_dir() as directory:
                _write_private(directory / "profiles.yml", text)
                yield directory
            return
        source = self._existing_file()
        if source.name == "profiles.yml":
            yield source.parent
            return
        with _private_dir() as directory:
            _write_private(directory / "profiles.yml", source.read_text())
            yield directory

    def _existing_file(self) -> Path:
        path = Path(str(self.existing_profiles_yml)).expanduser()
        if path.is_dir():
            path = path / "profiles.yml"
        if not path.is_file():
            raise DbtProfileError(f"existing_profiles_yml: there is no file {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise DbtProfileError(f"existing_profiles_yml: {path} is not readable YAML ({exc})") from None
        if not isinstance(data, dict) or self.name not in data:
            names = ", ".join(sorted(k for k in data if k != "config")) if isinstance(data, dict) else ""
            raise DbtProfileError(
                f"existing_profiles_yml: {path} does not define the profile {self.name!r}"
                + (f" (it defines: {names})" if names else "")
            )
        return path


@contextlib.contextmanager
def _private_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="plait-dbt-profiles-"))  # mode 0700
    try:
        os.chmod(directory, 0o700)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
