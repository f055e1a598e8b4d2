"""What a plugin registers, as registry entries (runs in the child interpreter of a build).

``child_main()`` imports the plugin modules named on its command line, registers them with a
private pluggy manager (never plait's global one, so only this plugin's registrations are
seen), calls the registration hooks through pluggy the way plait does, checks what they
return and writes the entries as JSON. Everything is rendered as text deterministically: signatures from
``inspect.signature`` with annotations as written, defaults by ``repr`` without addresses.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["describe_modules", "describe_block", "describe_callable", "format_signature", "child_main"]

_QUALIFIER = re.compile(r"\b(?:[A-Za-z_]\w*\.)+(?=[A-Za-z_]\w*)")
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_STARS: dict[inspect._ParameterKind, str] = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
_KINDS = {
    inspect.Parameter.POSITIONAL_ONLY: "positional-only",
    inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional-or-keyword",
    inspect.Parameter.VAR_POSITIONAL: "var-positional",
    inspect.Parameter.KEYWORD_ONLY: "keyword-only",
    inspect.Parameter.VAR_KEYWORD: "var-keyword",
}


class _Invalid(Exception):
    """The plugin registered something that cannot be described."""


# -- text ------------------------------------------------------------------------------------
def _annotation(annotation: Any) -> str | None:
    """The annotation as a user would write it: ``dict[str, Any] | None``, ``SqlAlchemyConnector``."""
    if annotation is inspect.Parameter.empty or annotation is inspect.Signature.empty:
        return None
    if isinstance(annotation, str):
        return annotation
    return _QUALIFIER.sub("", inspect.formatannotation(annotation))


def _default(value: Any) -> str | None:
    if value is inspect.Parameter.empty:
        return None
    return _ADDRESS.sub("", repr(value))


def _first_paragraph(doc: str | None) -> str:
    text = inspect.cleandoc(doc or "")
    return " ".join(text.split("\n\n")[0].split()) if text else ""


def _example(doc: str | None) -> str:
    """The indented body under an ``Example:`` / ``Examples:`` line of a docstring."""
    lines = inspect.cleandoc(doc or "").splitlines()
    for i, line in enumerate(lines):
        if line.strip() in ("Example:", "Examples:"):
            body: list[str] = []
            for follow in lines[i + 1 :]:
                if follow.strip() and not follow.startswith((" ", "\t")):
                    break
                body.append(follow)
            return textwrap.dedent("\n".join(body)).strip("\n")
    return ""


def format_signature(fn: Callable[..., Any]) -> tuple[str, list[dict[str, Any]], str | None]:
    """``(text, parameters, returns)`` of ``fn``'s signature, the same on every run."""
    sig = inspect.signature(fn)
    parts: list[str] = []
    params: list[dict[str, Any]] = []
    seen_star = False
    previous = None
    for p in sig.parameters.values():
        annotation, default = _annotation(p.annotation), _default(p.default)
        if previous is inspect.Parameter.POSITIONAL_ONLY and p.kind is not inspect.Parameter.POSITIONAL_ONLY:
            parts.append("/")
        if p.kind is inspect.Parameter.KEYWORD_ONLY and not seen_star:
            parts.append("*")
        seen_star = seen_star or p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.KEYWORD_ONLY)
        prefix = _STARS.get(p.kind, "")
        text = prefix + p.name + (f": {annotation}" if annotation else "")
        if default is not None:
            text += f" = {default}" if annotation else f"={default}"
        parts.append(text)
        previous = p.kind
        required = default is None and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        params.append({"name": p.name, "kind": _KINDS[p.kind], "annotation": annotation,
                       "default": default, "required": required})
    if previous is inspect.Parameter.POSITIONAL_ONLY:
        parts.append("/")
    returns = _annotation(sig.return_annotation)
    return f"({', '.join(parts)})" + (f" -> {returns}" if returns else ""), params, returns


def _import_path(obj: Any, module_name: str, qualname: str) -> str:
    """``module:qualname``, using the shortest enclosing package that exposes the same object
    (``plait_aws:S3Bucket`` rather than ``plait_aws.s3:S3Bucket``)."""
    if "<" not in qualname and "." not in qualname:
        parts = module_name.split(".")
        for i in range(1, len(parts)):
            candidate = ".".join(parts[:i])
            if getattr(sys.modules.get(candidate), qualname, None) is obj:
                return f"{candidate}:{qualname}"
    return f"{module_name}:{qualname}"


# -- entries -----------------------------------------------------------------------------------
def describe_block(cls: type) -> dict[str, Any]:
    schema = cls.block_schema()  # type: ignore[attr-defined]
    return {
        "slug": schema["block_type_slug"],
        "name": schema["block_type_name"],
        "description": schema["description"],
        "import_path": _import_path(cls, cls.__module__, cls.__qualname__),
        "capabilities": list(schema["capabilities"]),
        "secret_fields": list(schema["secret_fields"]),
        "code_example": inspect.cleandoc(getattr(cls, "code_example", "") or ""),
        "json_schema": schema["json_schema"],
    }


def describe_callable(obj: Any) -> dict[str, Any]:
    """A registered task or flow (or plain function)."""
    fn = getattr(obj, "fn", obj)
    if not callable(fn):
        raise _Invalid(f"register() takes a task or flow, got {obj!r}")
    signature, params, returns = format_signature(fn)
    doc = inspect.getdoc(fn)
    return {
        "name": str(getattr(obj, "name", None) or fn.__name__),
        "import_path": _import_path(obj, fn.__module__, fn.__qualname__),
        "signature": signature,
        "parameters": params,
        "returns": returns,
        "is_async": inspect.iscoroutinefunction(fn),
        "description": _first_paragraph(getattr(obj, "description", None) or doc),
        "example": _example(doc),
    }


def describe_modules(modules: dict[str, Any]) -> dict[str, Any]:
    """The ``Contents`` of plugin modules (entry point name -> module object).

    The modules are registered with a private plugin manager (never plait's global one) the
    way plait registers plugins — each hook validated and guarded — and their registration
    hooks are called through pluggy; any problem (a bad signature, a raising hook, an
    invalid contribution) stops the description with a message naming it.
    """
    from plait._plugin_contract import call_registration_hooks
    from plait._plugin_guard import guarded_plugin, new_manager

    manager = new_manager()
    hooks: set[str] = set()
    blocks: dict[str, type] = {}
    tasks: list[Any] = []
    flows: list[Any] = []
    schemes: set[str] = set()
    infrastructure: dict[str, Any] = {}  # kind -> block class (checked: it has block_type_slug)
    task_runners: dict[str, Any] = {}  # name -> task runner class
    for name, module in modules.items():
        raised: list[str] = []

        def on_error(hook: str, exc: BaseException, _name: str = name, _raised: list[str] = raised) -> None:
            _raised.append(f"hook {hook} of {_name} raised {type(exc).__name__}: {exc}")

        proxy, problems = guarded_plugin(name, module, on_error)
        if problems:
            raise _Invalid(f"plugin {name}: its hooks do not match plait.hookspecs ({problems[0]})")
        manager.register(proxy, name=name)
        hooks.update(caller.name for caller in manager.get_hookcallers(proxy) or ())
        got = call_registration_hooks(manager, proxy)
        if raised:
            raise _Invalid(raised[0])
        if got.problems:
            hook, reason = got.problems[0]
            raise _Invalid(f"{hook} of {name}: {reason}")
        for slug, cls in got.blocks.items():
            if blocks.get(slug, cls) is not cls:
                raise _Invalid(f"block type slug {slug!r} is registered by two classes")
            blocks[slug] = cls
        tasks += got.tasks
        flows += got.flows
        schemes.update(got.storage)
        infrastructure.update(got.infrastructure)
        task_runners.update(got.task_runners)

    def callables(objs: list[Any]) -> list[dict[str, Any]]:
        entries = {}
        for obj in objs:
            entry = describe_callable(obj)
            entries[(entry["name"], entry["import_path"])] = entry
        return [entries[key] for key in sorted(entries)]

    return {
        "hooks": sorted(hooks),
        "blocks": [describe_block(blocks[slug]) for slug in sorted(blocks)],
        "tasks": callables(tasks),
        "flows": callables(flows),
        "storage_schemes": sorted(schemes),
        "infrastructure": [{"kind": k, "block": infrastructure[k].block_type_slug} for k in sorted(infrastructure)],
        "task_runners": [{"name": k, "import_path": f"{cls.__module__}.{cls.__qualname__}"}
                         for k, cls in sorted(task_runners.items())],
    }


def _under(path: str | None, directory: Path) -> bool:
    try:
        return path is not None and Path(path).resolve().is_relative_to(directory)
    except OSError:
        return False


def _describe_job(job: dict[str, Any]) -> dict[str, Any]:
    """Import one plugin's modules with its source directory first on ``sys.path``, describe it."""
    source_dir = Path(job["source_dir"]).resolve()
    sys.path.insert(0, str(source_dir))
    importlib.invalidate_caches()
    try:
        modules = {}
        for name, target in job["entry_points"].items():
            module_name = target.split(":", 1)[0]
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
                    return {"ok": False, "kind": "invalid",
                            "message": f"its entry point {name} names {module_name}, which is not in {source_dir}"}
                return {"ok": False, "kind": "import",
                        "message": f"cannot import its plugin module {module_name} ({type(exc).__name__}: {exc})"}
            except Exception as exc:
                return {"ok": False, "kind": "invalid",
                        "message": f"importing its plugin module {module_name} raised {type(exc).__name__}: {exc}"}
            if not _under(getattr(module, "__file__", None), source_dir):
                return {"ok": False, "kind": "invalid",
                        "message": f"{module_name} was imported from {module.__file__}, not from {source_dir}; "
                                   "the plugin module must live in the collection's own directory"}
            modules[name] = module
        contents = describe_modules(modules)
        return {"ok": True, "contents": {"entry_points": dict(sorted(job["entry_points"].items())), **contents}}
    except _Invalid as exc:
        return {"ok": False, "kind": "invalid", "message": str(exc)}
    except Exception as exc:
        return {"ok": False, "kind": "invalid", "message": f"describing it failed: {type(exc).__name__}: {exc}"}
    finally:
        sys.path.remove(str(source_dir))


def child_main() -> None:
    """``python -c '...child_main()' JOBS_JSON OUT_JSON``: describe each job, write the results."""
    jobs = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    results = [_describe_job(job) for job in jobs]
    Path(sys.argv[2]).write_text(json.dumps(results), encoding="utf-8")
