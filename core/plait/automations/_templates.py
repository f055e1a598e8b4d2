"""Templates of webhooks and automation actions: Jinja2 in a sandbox.

Webhook templates turn an incoming HTTP request into an event; action templates fill an
action's fields from the event that triggered it. Both are written by people with an admin
key, but rendered over data from outside (a request body, an event's payload), in the
server process. So a template:

- cannot reach Python internals: ``jinja2.sandbox.ImmutableSandboxedEnvironment`` refuses
  attributes starting with ``_`` and the internals of functions, frames and generators,
  routes ``str.format`` through its own formatter and forbids changing lists and dicts. The
  globals are only ``range``, ``dict`` and ``namespace``; there is no loader, so nothing is
  included or imported;
- cannot exhaust the server: every text or list it makes is at most ``MAX_VALUE_SIZE``
  (1 MiB) characters or items, checked *before* the operations that multiply sizes (``*``,
  ``**``, padding, ``replace``, ``join``, format widths) run; its output is at most
  ``MAX_OUTPUT_CHARS`` (1 MiB); ``range`` gives at most ``MAX_RANGE`` numbers; a render stops
  after ``MAX_STEPS`` steps (loop bodies, calls, filters) or ``MAX_SECONDS``;
- fails loudly: an undefined variable or attribute is an error (``StrictUndefined``), and
  every failure is a ``TemplateError`` naming the template, with the line (and, for syntax
  errors found by ``check_template``, the column) of the mistake. Messages are masked.

``render_value`` walks a structure (an action's fields): a text that is exactly one
``{{ expression }}`` gives the expression's own value (a number stays a number, a mapping a
mapping), any other text renders to text.
"""

from __future__ import annotations

import contextvars
import json
import math
import re
import string
import time
import traceback
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, MappingView
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache, wraps
from typing import Any, cast

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError
from jinja2.ext import Extension
from jinja2.filters import FILTERS
from jinja2.lexer import TOKEN_RAW_BEGIN, TOKEN_RAW_END, TokenStream, ignored_tokens, newline_re
from jinja2.runtime import StrictUndefined, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace, _PassArg

from plait._masking import mask

__all__ = [
    "TemplateError", "check_template", "render_text", "render_value", "render_json", "MAX_TEMPLATE_CHARS",
    "MAX_OUTPUT_CHARS", "MAX_VALUE_SIZE", "MAX_RANGE", "MAX_STEPS", "MAX_SECONDS",
]

MAX_TEMPLATE_CHARS = 100_000
MAX_OUTPUT_CHARS = 1 << 20
MAX_VALUE_SIZE = 1 << 20  # characters of a text, items (and their contents) of a list or mapping
MAX_RANGE = 10_000
MAX_STEPS = 1_000_000
MAX_SECONDS = 2.0
_MAX_INT_BITS = 100_000  # about 30,000 digits
_MAX_JSON_INDENT = 8
_MESSAGE_CHARS = 500


class TemplateError(ValueError):
    """A template that does not parse, or fails while rendering.

    The message names the template (``what``: "template of webhook 'github'") and where the
    mistake is: ``line`` and ``column`` (1-based) when known, else None.
    """

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


class _Refused(Exception):
    """A template went past a limit (raised inside a render; becomes a ``TemplateError``)."""


# -- limits of one render ----------------------------------------------------------------------------
@dataclass
class _Budget:
    deadline: float
    steps: int = 0


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("plait_template_budget", default=None)
_PULLED: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("plait_template_tokens", default=None)


@contextmanager
def _budget() -> Iterator[None]:
    token = _BUDGET.set(_Budget(deadline=time.monotonic() + MAX_SECONDS))
    try:
        yield
    finally:
        _BUDGET.reset(token)


def _step() -> None:
    budget = _BUDGET.get()
    if budget is None:  # compile time (constant folding): only the size limits apply
        return
    budget.steps += 1
    if budget.steps > MAX_STEPS:
        raise _Refused(f"it takes more than {MAX_STEPS:,} steps (a loop over too much?)")
    if time.monotonic() > budget.deadline:
        raise _Refused(f"it takes longer than {MAX_SECONDS:g} s to render")


def _size(value: Any, limit: int = MAX_VALUE_SIZE, *, strict: bool = False) -> int:
    """Characters of texts plus items of lists and mappings in ``value``, counted until past
    ``limit`` (a list holding one long text many times counts it every time: that is what
    showing it costs). ``strict``: an undefined value inside raises its UndefinedError."""
    total = 0
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, (str, bytes, bytearray)):
            total += len(item)
        elif isinstance(item, Mapping):
            total += len(item)
            if total <= limit:
                pending.extend(item.keys())
                pending.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset, MappingView)):
            total += len(item)
            if total <= limit:
                pending.extend(cast(Iterable[Any], item))
        elif isinstance(item, range):
            total += len(item)
        elif isinstance(item, Namespace):  # shown as its attributes' repr
            pending.append(getattr(item, "_Namespace__attrs", {}))
        else:
            if strict and isinstance(item, Undefined):
                str(item)  # StrictUndefined: raises, naming what is undefined (or unsafe)
            total += 1
        if total > limit:
            return total
    return total


def _check_size(value: Any, what: str = "a value") -> Any:
    if _size(value) > MAX_VALUE_SIZE:
        raise _Refused(f"{what} would be larger than {MAX_VALUE_SIZE:,} characters or items")
    return value


def _check_width(width: Any, what: str) -> None:
    if isinstance(width, int) and width > MAX_VALUE_SIZE:
        raise _Refused(f"{what} {width:,} is larger than {MAX_VALUE_SIZE:,}")


def _check_int_bits(bits: int) -> None:
    if bits > _MAX_INT_BITS:
        raise _Refused(f"a number would be longer than {_MAX_INT_BITS:,} bits")


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?([a-zA-Z%])")


def _check_percent_format(fmt: str | bytes, args: Any) -> None:
    """``fmt % args`` fits: no ``*`` widths, widths below the limit, and the fields filled
    with ``args`` at most the limit."""
    text = fmt.decode("latin-1") if isinstance(fmt, (bytes, bytearray)) else fmt
    fields, widths = 0, 0
    for match in _PERCENT_SPEC.finditer(text):
        width, precision, kind = match.groups()
        if kind == "%":
            continue
        if "*" in (width, precision):
            raise _Refused("'*' widths in %-formats are not supported in templates; write the width out")
        for number in (width, precision):
            if number:
                _check_width(int(number), "a format width")
                widths += int(number)
        fields += 1
    if len(text) + widths + fields * (_size(args) + 64) > MAX_VALUE_SIZE:
        raise _Refused(f"a formatted text would be larger than {MAX_VALUE_SIZE:,} characters")


def _check_brace_format(fmt: str, args: Any) -> None:
    """``fmt.format(...)`` fits: no nested fields in format specs, widths below the limit."""
    fields, widths = 0, 0
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError as exc:
        raise _Refused(f"bad format string: {exc}") from None
    for _literal, field, spec, _conversion in parsed:
        if field is None:
            continue
        fields += 1
        if spec and "{" in spec:
            raise _Refused("nested fields in a format spec are not supported in templates; write the width out")
        for number in re.findall(r"\d+", spec or ""):
            _check_width(int(number), "a format width")
            widths += int(number)
    if len(fmt) + widths + fields * (_size(args) + 64) > MAX_VALUE_SIZE:
        raise _Refused(f"a formatted text would be larger than {MAX_VALUE_SIZE:,} characters")


def _check_replace(text: Any, old: Any, new: Any, count: Any = -1) -> None:
    if not isinstance(text, (str, bytes)) or not isinstance(old, (str, bytes)) or not isinstance(new, (str, bytes)):
        return
    found = len(text) + 1 if not old else text.count(old)  # type: ignore[arg-type]
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    if len(text) + found * max(len(new) - len(old), 0) > MAX_VALUE_SIZE:
        raise _Refused(f"replace would make a text larger than {MAX_VALUE_SIZE:,} characters")


def _check_join(separator: Any, items: list[Any]) -> None:
    joined = sum(_size(item) for item in items) + max(len(items) - 1, 0) * len(str(separator))
    if joined > MAX_VALUE_SIZE:
        raise _Refused(f"join would make a text larger than {MAX_VALUE_SIZE:,} characters")


def _check_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Refuse a method call whose result would pass the size limit; ``args`` back (an
    iterable given to ``join`` made a list, so it is read once)."""
    owner = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", "")
    if isinstance(owner, (str, bytes, bytearray)):
        if name in ("ljust", "rjust", "center", "zfill"):
            _check_width(args[0] if args else kwargs.get("width"), f"{name} width")
        elif name == "expandtabs":
            size = args[0] if args else kwargs.get("tabsize", 8)
            tabs = owner.count("\t") if isinstance(owner, str) else owner.count(b"\t")
            if isinstance(size, int) and len(owner) + tabs * size > MAX_VALUE_SIZE:
                raise _Refused(f"expandtabs would make a text larger than {MAX_VALUE_SIZE:,} characters")
        elif name == "replace" and len(args) >= 2:
            _check_replace(owner, *args[:3])
        elif name == "join" and args:
            items = list(args[0])
            _check_join(owner, items)
            return (items, *args[1:])
        elif name in ("translate", "maketrans"):
            raise _Refused(f"{name} is not available in templates; use replace")
    elif isinstance(owner, int) and name == "to_bytes":
        _check_width(args[0] if args else kwargs.get("length", 1), "to_bytes length")
    return args


def _check_product(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int):
        _check_int_bits(abs(left).bit_length() + abs(right).bit_length())
        return
    for seq, times in ((left, right), (right, left)):
        if isinstance(times, int) and isinstance(seq, (str, bytes, list, tuple)) and times > 0:
            if _size(seq) * times > MAX_VALUE_SIZE:
                raise _Refused(f"repeating would make a value larger than {MAX_VALUE_SIZE:,} characters or items")


def _check_power(base: Any, exponent: Any) -> None:
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        _check_int_bits(abs(base).bit_length() * exponent)


def _check_sum(left: Any, right: Any) -> None:
    if not isinstance(left, (int, float)) or not isinstance(right, (int, float)):
        if _size(left) + _size(right) > MAX_VALUE_SIZE:
            raise _Refused(f"adding would make a value larger than {MAX_VALUE_SIZE:,} characters or items")


def _range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise _Refused(f"range gives at most {MAX_RANGE:,} numbers, not {len(numbers):,}")
    return numbers


# -- filters ------------------------------------------------------------------------------------------
_PLAIN_FILTERS = (
    "abs", "attr", "capitalize", "count", "d", "default", "dictsort", "e", "escape", "filesizeformat", "first",
    "float", "forceescape", "groupby", "int", "items", "last", "length", "list", "lower", "map", "max", "min",
    "reject", "rejectattr", "reverse", "round", "safe", "select", "selectattr", "sort", "string", "striptags",
    "sum", "title", "trim", "truncate", "unique", "upper", "urlencode", "wordcount",
)


def _indent_check(value: Any, width: Any = 4, *args: Any, **kwargs: Any) -> None:
    pad = width if isinstance(width, int) else len(str(width))
    if isinstance(value, str) and len(value) + (value.count("\n") + 1) * max(pad, 0) > MAX_VALUE_SIZE:
        raise _Refused(f"indent would make a text larger than {MAX_VALUE_SIZE:,} characters")


def _count_check(value: Any, count: Any = 1, *args: Any, **kwargs: Any) -> None:
    if isinstance(count, int) and count > MAX_RANGE:
        raise _Refused(f"a count of {count:,} is larger than {MAX_RANGE:,}")


def _format_check(value: Any, *args: Any, **kwargs: Any) -> None:
    if isinstance(value, str):
        _check_percent_format(value, kwargs or args)


def _json_shape(value: Any) -> tuple[int, int]:
    """(items, deepest nesting) of ``value``, counted until past the size limit."""
    items, deepest = 0, 0
    pending = [(value, 0)]
    while pending and items <= MAX_VALUE_SIZE:
        item, depth = pending.pop()
        items += 1
        deepest = max(deepest, depth)
        if isinstance(item, Mapping):
            pending.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, (list, tuple)):
            pending.extend((v, depth + 1) for v in item)
    return items, deepest


def _tojson_check(value: Any, indent: Any = None) -> None:
    if indent is None:
        return
    if not isinstance(indent, int) or isinstance(indent, bool) or not 0 <= indent <= _MAX_JSON_INDENT:
        raise _Refused(f"tojson indent is a number from 0 to {_MAX_JSON_INDENT}, not {indent!r}")
    items, deepest = _json_shape(value)
    if items * (deepest * indent + 1) > MAX_VALUE_SIZE:
        raise _Refused(f"the indented JSON would be larger than {MAX_VALUE_SIZE:,} characters")


def _guarded(name: str, check: Callable[..., None] | None = None) -> Callable[..., Any]:
    """Jinja's filter ``name``, counting a step, checking its value (and with ``check`` its
    arguments) before it runs and its result after."""
    func = FILTERS[name]
    skip = 0 if _PassArg.from_obj(func) is None else 1  # the context/environment Jinja passes first

    @wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _step()
        given = args[skip:]
        if given:
            _check_size(given[0], f"the value given to the {name} filter")
            if check is not None:
                check(*given, **kwargs)
        return _check_size(func(*args, **kwargs), "a result")

    return guarded


def _guarded_join() -> Callable[..., Any]:
    func = FILTERS["join"]

    @wraps(func)
    def join(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> Any:
        _step()
        items = list(value)
        _check_join(d, items)
        return _check_size(func(eval_ctx, items, d, attribute), "a result")

    return join


def _filters() -> dict[str, Callable[..., Any]]:
    chosen: dict[str, Callable[..., Any]] = {name: _guarded(name) for name in _PLAIN_FILTERS}
    chosen.update(
        center=_guarded("center", lambda value, width=80: _check_width(width, "center width")),
        indent=_guarded("indent", _indent_check), batch=_guarded("batch", _count_check),
        slice=_guarded("slice", _count_check), format=_guarded("format", _format_check),
        replace=_guarded("replace", lambda value, old="", new="", count=None: _check_replace(
            value, old, new, -1 if count is None else count)),
        tojson=_guarded("tojson", _tojson_check), join=_guarded_join(),
    )
    return chosen


# -- the environment -------------------------------------------------------------------------------------
class _Generator(CodeGenerator):
    """Jinja's code generator with two changes: every block body (a loop's, an if's, a
    macro's) counts a step first, and ``~`` joins through the size-checked ``concat``."""

    def blockvisit(self, nodes_: Any, frame: Frame) -> None:
        self.writeline("environment.plait_step()")
        super().blockvisit(nodes_, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _Positions(Extension):
    """Counts the tokens the parser pulls, so a syntax error can be given a column."""

    def filter_stream(self, stream: TokenStream) -> Iterator[Any]:
        pulled = _PULLED.get()
        for token in stream:
            if pulled is not None:
                pulled[0] += 1
            yield token


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox with plait's limits (module docstring)."""

    code_generator_class = _Generator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self) -> None:
        super().__init__(
            undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True, finalize=_finalize,
            extensions=[_Positions], auto_reload=False, cache_size=0,
        )
        self.globals.clear()
        self.globals.update(range=_range, dict=dict, namespace=Namespace)
        self.filters.clear()
        self.filters.update(_filters())
        self.policies["json.dumps_kwargs"] = {"sort_keys": True, "ensure_ascii": False}

    @staticmethod
    def plait_step() -> None:
        _step()

    def concat(self, pieces: Any) -> str:
        """Join output pieces (a buffer, a ``~`` chain), refusing past the size limit."""
        texts: list[str] = []
        total = 0
        for piece in pieces:
            if not isinstance(piece, str):
                _check_size(piece, "a piece of text")
                piece = str(piece)
            total += len(piece)
            if total > MAX_VALUE_SIZE:
                raise _Refused(f"a text would be larger than {MAX_VALUE_SIZE:,} characters")
            texts.append(piece)
        return "".join(texts)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _step()
        if operator == "*":
            _check_product(left, right)
        elif operator == "**":
            _check_power(left, right)
        elif operator == "+":
            _check_sum(left, right)
        elif operator == "%" and isinstance(left, (str, bytes)):
            _check_percent_format(left, right)
        return _check_size(super().call_binop(context, operator, left, right), "a result")

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        _step()
        args = _check_call(obj, args, kwargs)
        return _check_size(super().call(context, obj, *args, **kwargs), "a result")

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_brace_format(fmt, (args, kwargs))
            return str(_check_size(wrapped(*args, **kwargs), "a result"))

        return checked


def _finalize(value: Any) -> Any:
    """What ``{{ ... }}`` outputs, checked before it is made text (an undefined value inside
    a list or mapping is an error too, as one on its own is)."""
    if _size(value, strict=True) > MAX_VALUE_SIZE:
        raise _Refused(f"an output value would be larger than {MAX_VALUE_SIZE:,} characters or items")
    return value


_ENV = _Sandbox()
_UNSUPPORTED: tuple[tuple[type[nodes.Node], str], ...] = (
    (nodes.Extends, "extends"), (nodes.Include, "include"), (nodes.Import, "import"),
    (nodes.FromImport, "import"), (nodes.ScopedEvalContextModifier, "autoescape"),
    (nodes.EvalContextModifier, "autoescape"),
)


# -- parsing ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Compiled:
    template: Any  # jinja2.Template
    native: Any  # a jinja2.Template assigning "result", for a text that is one {{ expression }}; or None
    native_line: int = 1  # where that expression is


class _Problem(Exception):
    def __init__(self, message: str, line: int | None, column: int | None = None) -> None:
        super().__init__(message)
        self.message, self.line, self.column = message, line, column


def _lexed(source: str) -> str:
    """``source`` as the lexer sees it (line breaks made ``\\n``): columns count in it."""
    return "\n".join(newline_re.split(source)[::2])


def _line_and_column(text: str, offset: int) -> tuple[int, int]:
    offset = max(0, min(offset, len(text)))
    return text.count("\n", 0, offset) + 1, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _next_visible(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _syntax_offset(text: str, exc: TemplateSyntaxError, pulled: int) -> int | None:
    """Where in ``text`` the syntax error ``exc`` is: the lexer's failure point, or the
    token the parser stopped at (the last it pulled, on the error's line)."""
    spots: list[int] = []  # offsets of the tokens the parser sees, in order
    pos = 0
    try:
        for _lineno, kind, raw in _ENV.lexer.tokeniter(text, None):
            at = text.find(raw, pos) if raw else pos
            at = pos if at < 0 else at
            pos = at + len(raw)
            if kind not in ignored_tokens and kind not in (TOKEN_RAW_BEGIN, TOKEN_RAW_END):
                spots.append(at)
    except TemplateSyntaxError:
        return _next_visible(text, pos)  # the lexer stopped here
    if "end of template" in (exc.message or "").lower():
        return len(text.rstrip())
    line = exc.lineno
    index = min(max(pulled - 1, 0), len(spots) - 1)
    for i in range(index, -1, -1):
        found_line = text.count("\n", 0, spots[i]) + 1
        if found_line == line:
            return spots[i]
        if found_line < line:
            break
    on_line = [s for s in spots if text.count("\n", 0, s) + 1 == line]
    return on_line[0] if on_line else None


def _name_offset(text: str, line: int, name: str) -> int | None:
    """Where the filter or test ``name`` is used on ``line``."""
    start = 0
    for _ in range(line - 1):
        start = text.find("\n", start) + 1
        if start == 0:
            return None
    end = text.find("\n", start)
    found = re.search(rf"(?:\||\bis\s+(?:not\s+)?)\s*({re.escape(name)})\b", text[start:end if end >= 0 else None])
    return start + found.start(1) if found else None


def _parse(source: str) -> nodes.Template:
    text = _lexed(source)
    pulled = [0]
    token = _PULLED.set(pulled)
    try:
        return _ENV.parse(source)
    except TemplateSyntaxError as exc:
        offset = _syntax_offset(text, exc, pulled[0])
        message = exc.message or "syntax error"
        if offset is None:
            raise _Problem(message, exc.lineno) from None
        line, column = _line_and_column(text, offset)
        raise _Problem(message, line, column) from None
    finally:
        _PULLED.reset(token)


def _native_expression(tree: nodes.Template) -> nodes.Expr | None:
    """The expression of a template that is exactly one ``{{ expression }}``, else None."""
    if len(tree.body) != 1 or not isinstance(tree.body[0], nodes.Output):
        return None
    parts = tree.body[0].nodes
    if len(parts) != 1 or isinstance(parts[0], nodes.TemplateData):
        return None
    return parts[0]


@lru_cache(maxsize=512)
def _compile(source: str) -> _Compiled:
    """``source`` parsed, checked and compiled (cached: a webhook renders the same text again
    and again).

    Raises:
        _Problem: It does not parse or compile, or uses something templates may not.
    """
    if not isinstance(source, str):
        raise _Problem(f"a template is a text, not {type(source).__name__}", None)
    if len(source) > MAX_TEMPLATE_CHARS:
        raise _Problem(f"it is {len(source):,} characters long; a template has at most {MAX_TEMPLATE_CHARS:,}", None)
    tree = _parse(source)
    for kind, word in _UNSUPPORTED:
        for found in tree.find_all(kind):
            raise _Problem(f"'{word}' is not available in templates (a template stands alone)", found.lineno)
    try:
        template = _ENV.from_string(tree)
        expression = _native_expression(tree)
        native, native_line = None, 1
        if expression is not None:
            body: list[nodes.Node] = [nodes.Assign(nodes.Name("result", "store"), expression, lineno=1)]
            native, native_line = _ENV.from_string(nodes.Template(body, lineno=1)), expression.lineno
    except TemplateSyntaxError as exc:  # TemplateAssertionError: an unknown filter or test
        message = exc.message or "syntax error"
        named = re.search(r"named '([^']+)'", message)
        offset = _name_offset(_lexed(source), exc.lineno, named.group(1)) if named else None
        if offset is None:
            raise _Problem(message, exc.lineno) from None
        raise _Problem(message, *_line_and_column(_lexed(source), offset)) from None
    return _Compiled(template, native, native_line)


def _where(line: int | None, column: int | None) -> str:
    if line is None:
        return ""
    return f"line {line}, column {column}: " if column is not None else f"line {line}: "


def _short(text: str) -> str:
    text = mask(text)
    return text if len(text) <= _MESSAGE_CHARS else text[:_MESSAGE_CHARS] + "..."


def _compiled(source: str, what: str) -> _Compiled:
    try:
        return _compile(source)
    except _Problem as problem:
        raise TemplateError(f"{what}: {_where(problem.line, problem.column)}{_short(problem.message)}",
                            line=problem.line, column=problem.column) from None


def check_template(text: str, *, what: str) -> None:
    """Refuse a template that will never render: its syntax, unknown filters and tests,
    and what templates may not use (include, import, extends, autoescape blocks).

    Args:
        text: The template.
        what: What it is, for the message ("template of webhook 'github'").

    Raises:
        TemplateError: Naming ``what``, the line and column, and the mistake.
    """
    _compiled(text, what)


# -- rendering -----------------------------------------------------------------------------------------------
def _template_line(exc: BaseException) -> int | None:
    """The template line ``exc`` was raised on (Jinja rewrites tracebacks to show it)."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == "<template>":
            line = frame.lineno
    return line


def _render_error(exc: Exception, what: str, line: int | None = None) -> TemplateError:
    line = _template_line(exc) or line
    if isinstance(exc, SecurityError):
        detail = f"{exc} (templates cannot reach Python internals)"
    elif isinstance(exc, (UndefinedError, _Refused)):
        detail = str(exc)
    elif isinstance(exc, RecursionError):
        detail = "it recurses too deeply"
    elif isinstance(exc, MemoryError):
        detail = "it needs more memory than the server has"
    else:
        detail = f"{type(exc).__name__}: {exc}"
    return TemplateError(f"{what}: {_where(line, None)}{_short(detail)}", line=line)


def _variables(context: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(context, Mapping):
        raise TypeError(f"a template's context is a mapping of names to values, not {type(context).__name__}")
    return {str(k): v for k, v in context.items()}


def render_text(text: str, context: Mapping[str, Any], *, what: str) -> str:
    """``text`` rendered with the variables of ``context``.

    Raises:
        TemplateError: It does not parse, uses an undefined variable or attribute, reaches
            for Python internals, or passes a limit (the output's 1 MiB included).
    """
    compiled = _compiled(text, what)
    variables = _variables(context)
    pieces: list[str] = []
    total = 0
    with _budget():
        try:
            for piece in compiled.template.generate(variables):
                total += len(piece)
                if total > MAX_OUTPUT_CHARS:
                    raise TemplateError(f"{what}: its output is larger than {MAX_OUTPUT_CHARS:,} characters")
                pieces.append(piece)
        except TemplateError:
            raise
        except Exception as exc:
            raise _render_error(exc, what) from None
    return "".join(pieces)


def _json_value(value: Any, what: str) -> Any:
    """``value`` as plain JSON data (tuples as lists, Markup as text), or a TemplateError."""
    if isinstance(value, Undefined):
        try:
            str(value)  # StrictUndefined: raises the UndefinedError naming what is missing
        except Exception as exc:
            raise _render_error(exc, what) from None
    if value is None or isinstance(value, (bool, int, str)):
        return str(value) if isinstance(value, str) and type(value) is not str else value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TemplateError(f"{what}: the expression gives {value}, which JSON cannot carry")
        return value
    if isinstance(value, (list, tuple, range, types.GeneratorType)):
        items = list(value)
        if _size(items) > MAX_VALUE_SIZE:
            raise TemplateError(f"{what}: the expression gives more than {MAX_VALUE_SIZE:,} items")
        return [_json_value(v, what) for v in items]
    if isinstance(value, Mapping):
        out = {}
        for key, inner in value.items():
            if not isinstance(key, str):
                raise TemplateError(f"{what}: the expression gives a mapping with the key {key!r}; keys are texts")
            out[str(key)] = _json_value(inner, what)
        return out
    raise TemplateError(f"{what}: the expression gives a {type(value).__name__} object, not a JSON value "
                        "(text, number, true/false, none, list or mapping)")


def _render_native(compiled: _Compiled, context: Mapping[str, Any], what: str) -> Any:
    variables = _variables(context)
    template = compiled.native
    with _budget():
        try:
            try:
                run = template.new_context(variables)
                for _ in template.root_render_func(run):
                    pass
                value = _check_size(run.vars["result"], "the expression's value")
                if isinstance(value, Undefined):
                    str(value)  # StrictUndefined: raises the UndefinedError naming what is missing
            except Exception:
                template.environment.handle_exception()  # re-raised with the template's lines
        except Exception as exc:
            raise _render_error(exc, what, compiled.native_line) from None
    return _json_value(value, what)


def render_value(value: Any, context: Mapping[str, Any], *, what: str) -> Any:
    """``value`` with every text in it rendered: mappings and lists are walked (keys stay as
    they are), a text that is exactly one ``{{ expression }}`` gives the expression's value
    as JSON data (``"{{ event.payload.count }}"`` gives 3, not "3"), other texts render to
    text, and anything else is kept.

    Raises:
        TemplateError: As ``render_text``; the message adds where in ``value`` the text is
            (``parameters.table``).
    """
    return _render_value(value, context, what, "")


def _render_value(value: Any, context: Mapping[str, Any], what: str, path: str) -> Any:
    if isinstance(value, str):
        here = f"{what} (at {path})" if path else what
        compiled = _compiled(value, here)
        if compiled.native is not None:
            return _render_native(compiled, context, here)
        return render_text(value, context, what=here)
    if isinstance(value, Mapping):
        return {k: _render_value(v, context, what, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_render_value(v, context, what, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON a database can store")


def render_json(text: str, context: Mapping[str, Any], *, what: str) -> Any:
    """``text`` rendered, then read as JSON.

    Raises:
        TemplateError: As ``render_text``, or the output is not JSON (the message says where
            in the output, and quotes it there).
    """
    output = render_text(text, context, what=what)
    try:
        return json.loads(output, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        near = output[max(exc.pos - 30, 0):exc.pos + 30]
        raise TemplateError(
            f"{what}: its output is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno} of the output "
            f"(near {_short(near)!r}); use the tojson filter for values: {{{{ body.name | tojson }}}}"
        ) from None
    except ValueError as exc:
        raise TemplateError(f"{what}: its output is not JSON: {_short(str(exc))}") from None
    except RecursionError:
        raise TemplateError(f"{what}: its output is JSON nested too deeply") from None
