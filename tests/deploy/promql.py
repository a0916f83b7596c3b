"""What a PromQL expression reads: the metric names it selects, so the deploy files can be
checked against the metrics hotpool really exports.

Prometheus 2.42 (Debian's) has no parse endpoint (``/api/v1/parse_query`` came later) and
promtool prints no syntax tree, so this is a small lexer over PromQL's tokens. It does not
validate: the tests hand every expression to promtool for that (as a recording rule). What
it must get right is which identifiers are metric names, and it errs loudly (ValueError)
rather than guess when an expression selects metrics by a pattern.

A metric name is an identifier that is not a keyword, not a function or aggregation (those
are followed by ``(``, ``by`` or ``without``), not a label name (inside ``{...}``, or in the
label list after ``by``/``without``/``on``/``ignoring``/``group_left``/``group_right``), and
not inside a range or subquery ``[...]``; ``{__name__="x"}`` names ``x``. Grafana's
``$variables`` and ``label_values(...)`` queries are understood too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# PromQL's keywords are case-insensitive; aggregations and functions need no list: "(",
# "by" or "without" follows them
KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}
    | {"by", "without", "on", "ignoring", "group_left", "group_right"}
)
LABEL_LISTS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|\#[^\n]*)
    |(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    |(?P<number>(?:0[xX][0-9a-fA-F]+|[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)[a-zA-Z0-9_]*)
    |(?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
    |(?P<var>\$\{[^}]*\}|\$\w+)
    |(?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=(){}\[\],@:])
    """,
    re.VERBOSE,
)
# Grafana's interval variables stand for durations; any other variable for label values
_DURATION_VARS = re.compile(r"\$\{?__(?:rate_interval|interval|range)\b\}?")
_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_LABEL_VALUES = re.compile(r"^\s*label_values\((?P<args>.*)\)\s*$", re.DOTALL)
_QUERY_RESULT = re.compile(r"^\s*query_result\((?P<expr>.*)\)\s*$", re.DOTALL)


def tokens(expr: str) -> list[tuple[str, str]]:
    """(kind, text) of each token, spaces and comments left out; ValueError on a character
    PromQL has no token for."""
    found, at = [], 0
    while at < len(expr):
        match = _TOKEN.match(expr, at)
        if match is None:
            raise ValueError(f"unexpected {expr[at]!r} at {at} in {expr!r}")
        if match.lastgroup != "space":
            found.append((match.lastgroup or "", match.group()))
        at = match.end()
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects; ValueError when it selects by a ``__name__``
    pattern (no name could be checked)."""
    toks = tokens(expr)
    names: set[str] = set()
    at = 0
    while at < len(toks):
        kind, text = toks[at]
        following = toks[at + 1][1] if at + 1 < len(toks) else ""
        if text == "{":
            at = _matchers(toks, at, names)
        elif text == "[":
            at = _closing(toks, at, "[", "]")
        elif kind == "ident" and text.lower() in LABEL_LISTS and following == "(":
            at = _closing(toks, at + 1, "(", ")")
        elif kind == "ident" and text.lower() not in KEYWORDS and not _is_call(following):
            names.add(text)
        at += 1
    return names


def _is_call(following: str) -> bool:
    """Whether an identifier followed by this is a function or an aggregation: ``f(`` or
    ``sum by (...)`` / ``sum without (...)`` (a metric name is never followed by those)."""
    return following == "(" or following.lower() in ("by", "without")


def _closing(toks: list[tuple[str, str]], at: int, opening: str, closing: str) -> int:
    """The index of the token closing the bracket opened at ``at``."""
    depth = 0
    for index in range(at, len(toks)):
        depth += {opening: 1, closing: -1}.get(toks[index][1], 0)
        if depth == 0:
            return index
    raise ValueError(f"unclosed {opening!r}")


def _matchers(toks: list[tuple[str, str]], at: int, names: set[str]) -> int:
    """Reads ``{label op "value", ...}`` from ``at``; adds the name a ``__name__="x"``
    matcher selects; returns the index of the ``}``."""
    end = _closing(toks, at, "{", "}")
    inside = toks[at + 1 : end]
    for index, (kind, text) in enumerate(inside):
        if kind == "ident" and text == "__name__":
            op, value = inside[index + 1][1], inside[index + 2][1]
            if op != "=":
                raise ValueError(f"__name__{op}{value} selects metrics by a pattern")
            names.add(value[1:-1])
    return end


def grafana_names(query: str) -> set[str]:
    """The metric names a Grafana query reads: a panel's PromQL (with ``$variables``) or a
    variable's ``label_values(...)`` / ``query_result(...)``."""
    return metric_names(grafana_promql(query))


def grafana_promql(query: str) -> str:
    """The PromQL a Grafana query runs, variables replaced (``as_promql``): a panel's
    query itself, the selector of ``label_values(selector, label)`` ("" for
    ``label_values(label)``, which reads every series), the expression of
    ``query_result(...)``."""
    if match := _LABEL_VALUES.match(query):
        selector, _, _ = match.group("args").rpartition(",")
        return as_promql(selector.strip())
    if match := _QUERY_RESULT.match(query):
        return as_promql(match.group("expr").strip())
    return as_promql(query)


def as_promql(query: str) -> str:
    """A Grafana query as plain PromQL: interval variables become ``1m``, any other variable
    ``.*`` (they stand in label values, inside quotes)."""
    return _VARIABLE.sub(".*", _DURATION_VARS.sub("1m", query))


def exposed_names(families: Iterator[tuple[str, str]]) -> set[str]:
    """Every series name a scrape of these (family name, type) pairs can show, as the
    prometheus_client library writes them (a counter ``x`` is ``x_total`` and
    ``x_created``, a histogram ``x_bucket``, ``x_sum``, ``x_count`` and ``x_created``...)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("_info",),
    }
    names = set()
    for name, kind in families:
        names.update(name + suffix for suffix in suffixes.get(kind, ("",)))
    return names
