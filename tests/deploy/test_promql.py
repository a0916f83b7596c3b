"""The PromQL reader the deploy-file checks rely on: which identifiers are metric names."""

from __future__ import annotations

import pytest

from tests.deploy.promql import (
    as_promql,
    exposed_names,
    grafana_names,
    grafana_promql,
    metric_names,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ("hotpool_redis_up == 0", {"hotpool_redis_up"}),
        ('up{job=~"hotpool-main|hotpool-manager", instance!="x"} == 0', {"up"}),
        # functions, aggregations and their label lists are not metrics
        ("sum by (namespace, function) (rate(a_total[5m]))", {"a_total"}),
        ("sum(rate(a_total[5m])) by (le)", {"a_total"}),
        ("sum without (instance) (a)", {"a"}),
        ("max(b) == 0", {"b"}),
        ("SUM BY (le) (a) AND b", {"a", "b"}),
        (
            "histogram_quantile(0.99, sum by (le, phase) (rate(c_bucket[$__rate_interval])))",
            {"c_bucket"},
        ),
        # vector matching: on/ignoring/group_left take label lists
        ("a / on (ns, fn) group_left (version) b", {"a", "b"}),
        ("a * ignoring (instance) group_right c", {"a", "c"}),
        ("a > bool 1 unless b or c", {"a", "b", "c"}),
        # range vectors, subqueries, offsets and @ modifiers
        ("max_over_time(rate(a_total[5m])[1h:30s] offset 1d)", {"a_total"}),
        ("a @ start() - a offset -5m", {"a"}),
        ("rate(a_total[1h30m])", {"a_total"}),
        # label names and values inside matchers, with a comma or a brace in a value
        ('a{state="idle", le="+Inf", trigger=~"sync|web"}', {"a"}),
        ('a{path="/x{y},z"} + b', {"a", "b"}),
        # a metric selected by its name label; names with colons (recording rules)
        ('{__name__="hotpool_managers_alive", job="x"}', {"hotpool_managers_alive"}),
        ("job:hotpool_invocations:rate5m", {"job:hotpool_invocations:rate5m"}),
        # string and number arguments
        ('label_replace(a, "dst", "$1", "src", "(.*)")', {"a"}),
        ('count_values("value", a) + topk(3, b) + quantile(0.5, c)', {"a", "b", "c"}),
        ("clamp_min(a, 0x10) * 1e-3 + Inf - NaN", {"a"}),
        ("vector(1) + time()", set()),
        ("# a comment\n  a", {"a"}),
    ],
)
def test_metric_names_are_read_out_of_promql(expr, names):
    assert metric_names(as_promql(expr)) == names


def test_what_cannot_be_read_is_refused_not_guessed():
    with pytest.raises(ValueError, match="pattern"):
        metric_names('{__name__=~"hotpool_.*"}')
    with pytest.raises(ValueError, match="unclosed"):
        metric_names("sum(rate(a[5m)")
    with pytest.raises(ValueError, match="unexpected"):
        metric_names("a ? b")


def test_grafana_variables_and_variable_queries():
    assert as_promql('rate(a{ns=~"$namespace", fn=~"${function}"}[$__rate_interval])') == (
        'rate(a{ns=~".*", fn=~".*"}[1m])'
    )
    assert as_promql("increase(a[${__range}])") == "increase(a[1m])"
    assert grafana_names("label_values(hotpool_invocations_total, namespace)") == {
        "hotpool_invocations_total"
    }
    assert grafana_names('label_values(a{namespace=~"$namespace"}, function)') == {"a"}
    assert grafana_names("label_values(namespace)") == set()
    assert grafana_names("query_result(topk(5, sum by (function) (b)))") == {"b"}
    assert grafana_promql('label_values(a{ns=~"$namespace"}, function)') == 'a{ns=~".*"}'
    assert grafana_names('sum(rate(c_total{function=~"$function"}[$__rate_interval]))') == {
        "c_total"
    }


def test_exposed_names_follow_the_exposition_format():
    names = exposed_names(
        iter([("a", "counter"), ("b", "histogram"), ("c", "gauge"), ("d", "info")])
    )
    assert names == {
        "a_total", "a_created", "b_bucket", "b_sum", "b_count", "b_created", "c", "d_info",
    }  # fmt: skip
