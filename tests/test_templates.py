"""The sandboxed templates of webhooks and automation actions (plait.automations._templates):
rendering, native values, syntax errors with their line and column, the known escapes from
Jinja's sandbox (each must fail as a TemplateError and leak nothing), and the limits that
keep a template from exhausting the server (sizes checked before they are reached, output,
range, steps, time)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from plait._masking import forget_secrets, register_secret, wait_for_rebuild
from plait.automations import _templates
from plait.automations._templates import (
    MAX_OUTPUT_CHARS,
    TemplateError,
    check_template,
    render_json,
    render_text,
    render_value,
)

WHAT = "template of webhook 'hook'"


def context() -> dict[str, Any]:
    return {
        "body": {"name": "orders", "count": 3, "tags": ["a", "b"], "nested": {"x": 1}, "list": [1, 2],
                 "text": "y" * 1000},
        "text": '{"name": "orders"}',
        "headers": {"content-type": "application/json"},
        "query": {"env": "prod"},
        "webhook": {"name": "hook"},
    }


def failure(template: str, ctx: dict[str, Any] | None = None) -> TemplateError:
    with pytest.raises(TemplateError) as caught:
        render_text(template, context() if ctx is None else ctx, what=WHAT)
    assert str(caught.value).startswith(WHAT + ": "), caught.value
    return caught.value


# -- rendering ------------------------------------------------------------------------------------------
def test_a_template_renders_its_variables_filters_and_loops() -> None:
    out = render_text(
        "{{ body.name | upper }} x{{ body.count }} {{ body.tags | join(',') }} {{ query.env }}"
        "{% for t in body.tags %} [{{ loop.index }}:{{ t }}]{% endfor %} {{ 'a' ~ 'b' }} {{ '%03d' % 7 }} "
        "{{ '{}-{}'.format(1, 2) }} {{ range(3) | list | sum }} {{ dict(a=1) | tojson }}",
        context(), what=WHAT)
    assert out == 'ORDERS x3 a,b prod [1:a] [2:b] ab 007 1-2 3 {"a": 1}'


def test_undefined_variables_and_attributes_are_errors_naming_the_line() -> None:
    error = failure("first\nsecond {{ missing }}")
    assert "'missing' is undefined" in str(error) and error.line == 2
    error = failure("{{ body.nope }}")
    assert "has no attribute 'nope'" in str(error) and error.line == 1
    # what a template asks about on purpose is allowed
    assert render_text("{{ body.nope | default('-') }} {{ body.nope is defined }}", context(), what=WHAT) == "- False"


def test_runtime_errors_name_the_template_and_line() -> None:
    error = failure("{% for i in body.tags %}\n{{ 1 / 0 }}\n{% endfor %}")
    assert "ZeroDivisionError" in str(error) and error.line == 2


def test_the_context_must_be_a_mapping() -> None:
    with pytest.raises(TypeError, match="mapping"):
        render_text("x", ["not", "a", "mapping"], what=WHAT)  # type: ignore[arg-type]


# -- syntax errors at creation --------------------------------------------------------------------------
@pytest.mark.parametrize(("template", "line", "column", "words"), [
    ("{{ body.name ", 1, 13, "end of template"),
    ("{{ a + }}", 1, 8, "unexpected"),
    ("line one\n  {{ a ) }}", 2, 8, "unexpected ')'"),
    ("ok\nline2 {{ 'abc }}", 2, 10, "unexpected char"),
    ("{% if %}", 1, 7, "Expected an expression"),
    ("{% for x in y %}", 1, 17, "endfor"),
    ("{% endfor %}", 1, 4, "unknown tag 'endfor'"),
    ("hello\n\n    {{ a | nosuchfilter }}", 3, 12, "No filter named 'nosuchfilter'"),
    ("{{ a is nosuchtest }}", 1, 9, "No test named 'nosuchtest'"),
    ("{\"event\": \"x.y\",\r\n \"payload\": {{ body | tojson }\r\n}", 2, 30, "unexpected '}'"),
])
def test_syntax_errors_name_the_line_and_column(template: str, line: int, column: int, words: str) -> None:
    with pytest.raises(TemplateError) as caught:
        check_template(template, what=WHAT)
    error = caught.value
    assert (error.line, error.column) == (line, column), str(error)
    assert str(error).startswith(f"{WHAT}: line {line}, column {column}: ") and words in str(error)


@pytest.mark.parametrize("template", ["{% include 'other' %}", "{% import 'm' as m %}", "{% from 'm' import f %}",
                                      "{% extends 'base' %}", "{% autoescape true %}x{% endautoescape %}"])
def test_what_a_template_may_not_use_is_refused_at_creation(template: str) -> None:
    with pytest.raises(TemplateError, match="not available in templates") as caught:
        check_template(template, what=WHAT)
    assert caught.value.line == 1


def test_a_template_has_a_size_limit_and_is_text() -> None:
    with pytest.raises(TemplateError, match="at most 100,000"):
        check_template("x" * 100_001, what=WHAT)
    with pytest.raises(TemplateError, match="a template is a text"):
        check_template(b"{{ x }}", what=WHAT)  # type: ignore[arg-type]
    check_template("{{ x }}", what=WHAT)  # undefined names are a render-time matter


# -- the sandbox: known escapes -------------------------------------------------------------------------
ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''.__class__.__mro__[-1].__subclasses__() }}",
    "{{ ().__class__.__bases__[0].__subclasses__() }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ range.__globals__ }}",
    "{{ dict.__base__.__subclasses__() }}",
    "{{ dict.mro() }}",
    "{{ self._TemplateReference__context }}",
    "{{ self._TemplateReference__context.cycler.__init__.__globals__.os }}",
    "{{ self.__init__.__globals__ }}",
    "{{ request }}",
    "{{ request.application.__globals__.__builtins__.__import__('os') }}",
    "{{ config.items() }}",
    "{{ url_for.__globals__ }}",
    "{{ get_flashed_messages.__globals__ }}",
    "{{ '{0.__class__}'.format(body) }}",
    "{{ '{0.__class__.__mro__}'.format('') }}",
    "{{ '{x.__init__.__globals__}'.format(x=body) }}",
    "{{ '{0.__class__}'.format_map({'0': body}) }}",
    "{{ '{0.items.__self__}'.format(body) }}",
    "{{ body | attr('__class__') }}",
    "{{ body | attr('__init__') | attr('__globals__') }}",
    "{{ (body | attr('items')).__self__ }}",
    "{{ body.items.__self__ }}",
    "{{ body.__getitem__('name') }}",
    "{{ body.name.__len__() }}",
    "{{ body['__class__'] }}",
    "{{ body.tags.pop() }}",
    "{{ body.tags.append(9) }}",
    "{{ body.update({'name': 'changed'}) }}",
    "{{ body.nested.clear() }}",
    "{{ body.name.upper.__self__ }}",
    "{{ body.name.upper.__call__ }}",
    "{{ (1).__class__ }}",
    "{% set x = body.__class__ %}{{ x }}",
    "{{ body | map(attribute='__class__') | list }}",
    "{{ [body] | map(attribute='__class__') | first }}",
    "{{ body | selectattr('__class__') | list }}",
    "{{ [body] | sort(attribute='__class__.__name__') }}",
    "{% macro m() %}{{ m.__globals__ }}{% endmacro %}{{ m() }}",
    "{{ loop }}",
    "{{ (body.tags | map('upper')).gi_frame.f_globals }}",
    "{{ (body.tags | select).gi_code }}",
    "{% for t in body.tags %}{{ loop.__class__ }}{% endfor %}",
    "{% for t in body.tags %}{{ loop.cycle.__func__.__globals__ }}{% endfor %}",
    "{{ body | groupby('__class__') }}",
    "{{ body.get.__self__ }}",
    "{{ (body | items | first).__class__ }}",
    "{{ '%s' % body.__class__ }}",
]


@pytest.mark.parametrize("template", ESCAPES)
def test_known_sandbox_escapes_fail_and_leak_nothing(template: str) -> None:
    ctx = context()
    error = failure(template, ctx)
    text = str(error)
    for leak in ("<class", "subclasses'>", "builtins", "function ", "module", "popen", "uid=", "sys."):
        assert leak not in text, text
    # nothing was changed either
    assert ctx["body"]["tags"] == ["a", "b"] and ctx["body"]["name"] == "orders" and ctx["body"]["nested"] == {"x": 1}


def test_reaching_for_internals_says_so() -> None:
    error = failure("{{ ''.__class__ }}")
    assert "unsafe" in str(error) and "cannot reach Python internals" in str(error)


def test_only_the_documented_globals_exist() -> None:
    assert render_text("{{ range(2) | list }} {{ dict(a=1).a }} {% set ns = namespace(n=1) %}{{ ns.n }}",
                       {}, what=WHAT) == "[0, 1] 1 1"
    for name in ("cycler", "joiner", "lipsum", "self.module", "os", "__builtins__"):
        failure("{{ " + name + " }}")


# -- limits ------------------------------------------------------------------------------------------------
BOMBS = [
    ("{{ 'x' * 100000000 }}", "larger than"),
    ("{{ [0] * 100000000 }}", "larger than"),
    ("{% set s = 'x' * 1000000 %}{{ [s] * 10 }}", "larger than"),
    ("{{ 2 ** 10000000 }}", "bits"),
    ("{% set n = 10 ** 20000 %}{{ n * n * n * n * n * n }}", "bits"),
    ("{{ range(100000) | list }}", "at most 10,000 numbers"),
    ("{{ 'x'.ljust(1000000000) }}", "larger than"),
    ("{{ 'x'.center(1000000000) }}", "larger than"),
    ("{{ '7'.zfill(1000000000) }}", "larger than"),
    ("{{ '\t\t\t'.expandtabs(1000000) }}", "larger than"),
    ("{{ (1).to_bytes(1000000000, 'big') }}", "larger than"),
    ("{{ '{:>1000000000}'.format(1) }}", "larger than"),
    ("{{ '{:{}}'.format(1, 1000000000) }}", "nested fields"),
    ("{{ '%1000000000d' % 1 }}", "larger than"),
    ("{{ '%*d' % (1000000000, 1) }}", "'*' widths"),
    ("{{ '%1000000000d' | format(1) }}", "larger than"),
    ("{% set s = 'x' * 1000000 %}{{ s ~ s }}", "larger than"),
    ("{% set s = 'x' * 1000000 %}{{ s + s }}", "larger than"),
    ("{% set s = 'x' * 1000000 %}{{ [s, s, s] }}", "larger than"),
    ("{% set s = 'x' * 1000000 %}{{ [s, s] | join }}", "larger than"),
    ("{% set s = 'x' * 1000000 %}{{ ''.join([s, s]) }}", "larger than"),
    ("{% set s = 'x' * 2000 %}{{ s.replace('', s) }}", "larger than"),
    ("{% set s = 'x' * 2000 %}{{ s | replace('x', s) }}", "larger than"),
    ("{% set s = 'x' * 1000 %}{{ ('{0}' * 1000).format(s) }}", "larger than"),
    ("{% set s = 'x' * 1000 %}{{ ('%s' * 1000) % ((s,) * 1000) }}", "larger than"),
    ("{{ 'x' | center(1000000000) }}", "larger than"),
    ("{{ ('x\n' * 100000) | indent(100) }}", "larger than"),
    ("{{ range(10) | batch(1000000000, 'x') | list }}", "larger than"),
    ("{{ body | tojson(100) }}", "indent"),
    ("{{ 'abc'.translate({97: 'x'}) }}", "not available"),
    ("{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "larger than"),
    ("{% set s = 'x' * 600000 %}{% set ns = namespace(a=s, b=s) %}", "larger than"),
    ("{% set s = 'x' * 600000 %}{% set ns = namespace() %}{% set ns.a = s %}{% set ns.b = s %}{{ ns }}",
     "larger than"),
    ("{% set s = 'x' * 600000 %}{% set ns = namespace(a=s) %}{% set ns.b = s %}{{ ns ~ '' }}", "larger than"),
    ("{% macro grow(s) %}{{ grow(s ~ s) }}{% endmacro %}{{ grow('x') }}", "larger than"),
    ("{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}", "steps"),
    ("{% for i in range(10000) %}{{ body.text }}{% endfor %}", "output is larger than"),
    ("{% set s = 'x' * 1000 %}{% filter upper %}{% for i in range(10000) %}{{ s }}{% endfor %}{% endfilter %}",
     "larger than"),
    ("{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}", "recurses too deeply"),
]


@pytest.mark.parametrize(("template", "words"), BOMBS)
def test_templates_that_would_exhaust_the_server_are_stopped(template: str, words: str) -> None:
    started = time.monotonic()
    error = failure(template)
    assert words in str(error), str(error)
    assert time.monotonic() - started < 5


def test_a_render_stops_after_its_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_templates, "MAX_SECONDS", 0.2)
    ctx = {"body": {"text": "y" * 200_000}}
    started = time.monotonic()
    error = failure("{% for i in range(10000) %}{% set t = body.text.replace('y', 'z') %}{% endfor %}", ctx)
    assert "longer than 0.2 s" in str(error)
    assert time.monotonic() - started < 2


def test_output_up_to_the_limit_is_fine() -> None:
    out = render_text("{% for i in range(1000) %}{{ s }}{% endfor %}", {"s": "x" * 1000}, what=WHAT)
    assert len(out) == 1_000_000 <= MAX_OUTPUT_CHARS


# -- render_value ------------------------------------------------------------------------------------------
def test_render_value_gives_native_values_for_one_expression_and_text_otherwise() -> None:
    event = {"payload": {"count": 3, "table": "orders", "rows": [1, 2], "ok": True, "none": None, "ratio": 0.5}}
    spec = {
        "parameters": {
            "count": "{{ event.payload.count }}", "rows": "{{ event.payload.rows }}", "all": "{{ event.payload }}",
            "ok": "{{ event.payload.ok }}", "none": "{{ event.payload.none }}", "ratio": "{{ event.payload.ratio }}",
            "text": "table {{ event.payload.table }}", "spaced": " {{ event.payload.count }}",
            "twice": "{{ event.payload.count }}{{ event.payload.count }}", "tuple": "{{ (1, 2) }}",
            "sum": "{{ event.payload.count + 1 }}", "plain": "no template", "kept": 7,
        },
        "tags": ["{{ event.payload.table }}", "x-{{ event.payload.count }}"],
        "{{ not rendered }}": None,
    }
    out = render_value(spec, {"event": event}, what="action 1 of automation 'a'")
    assert out == {
        "parameters": {
            "count": 3, "rows": [1, 2], "all": event["payload"], "ok": True, "none": None, "ratio": 0.5,
            "text": "table orders", "spaced": " 3", "twice": "33", "tuple": [1, 2], "sum": 4, "plain": "no template",
            "kept": 7,
        },
        "tags": ["orders", "x-3"],
        "{{ not rendered }}": None,
    }
    assert out["parameters"]["all"] is not event["payload"] or out["parameters"]["all"] == event["payload"]


def test_render_value_errors_say_where_the_text_is() -> None:
    with pytest.raises(TemplateError) as caught:
        render_value({"parameters": {"table": "{{ event.payload.missing }}"}}, {"event": {"payload": {}}},
                     what="action 1 of automation 'a'")
    assert str(caught.value).startswith("action 1 of automation 'a' (at parameters.table): line 1: ")
    with pytest.raises(TemplateError, match=r"\(at tags\[1\]\)"):
        render_value({"tags": ["ok", "{{ nope }}"]}, {}, what="action")


@pytest.mark.parametrize(("template", "words"), [
    ("{{ range }}", "not a JSON value"),
    ("{{ body.items }}", "not a JSON value"),
    ("{{ missing }}", "'missing' is undefined"),
    ("{{ body.nope }}", "has no attribute 'nope'"),
    ("{{ {1: 2} }}", "keys are texts"),
    ("{{ 1e308 * 10 }}", "JSON cannot carry"),
    ("{{ ''.__class__ }}", "unsafe"),
])
def test_a_native_value_must_be_json(template: str, words: str) -> None:
    with pytest.raises(TemplateError, match=words):
        render_value(template, context(), what=WHAT)


# -- render_json -------------------------------------------------------------------------------------------
def test_render_json_reads_the_output_and_says_where_it_is_not_json() -> None:
    got = render_json('{"event": "shop.order.paid", "payload": {{ body | tojson }}}', context(), what=WHAT)
    assert got["event"] == "shop.order.paid" and got["payload"]["name"] == "orders"
    with pytest.raises(TemplateError) as caught:
        render_json('{"event": "x.y",\n "payload": {{ body.name }}}', context(), what=WHAT)
    message = str(caught.value)
    assert "its output is not JSON" in message and "line 2, column 13 of the output" in message
    assert "tojson" in message
    with pytest.raises(TemplateError, match="not JSON"):
        render_json('{"n": NaN}', {}, what=WHAT)


def test_tojson_escapes_what_would_break_out_of_a_json_string() -> None:
    body = {"name": 'quote " and </script> and \\ and \n'}
    got = render_json('{"name": {{ body.name | tojson }}}', {"body": body}, what=WHAT)
    assert got == body


# -- masking ----------------------------------------------------------------------------------------------
def test_error_messages_are_masked() -> None:
    secret = "tmpl-secret-5c0ffee5"
    register_secret(secret)
    wait_for_rebuild()
    try:
        with pytest.raises(TemplateError) as caught:
            render_json("{{ body.secret }} is not json", {"body": {"secret": secret}}, what=WHAT)
        assert secret not in str(caught.value) and "***" in str(caught.value)
    finally:
        forget_secrets(secret)


def test_the_same_template_renders_fast_again_and_again() -> None:
    template = '{"event": "x.y", "resource": {"id": "w/{{ body.name }}"}, "payload": {{ body | tojson }}}'
    started = time.monotonic()
    for _ in range(500):
        render_json(template, context(), what=WHAT)
    assert time.monotonic() - started < 5
