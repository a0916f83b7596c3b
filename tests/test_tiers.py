"""The tier check (tests/conftest.py): a test without exactly one tier marker stops the run."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.unit
pytest_plugins = ["pytester"]

INI = """
[pytest]
asyncio_default_fixture_loop_scope = function
markers =
    unit: u
    contract: c
    integration: i
"""


def test_a_test_without_a_tier_or_with_two_stops_collection_naming_it(pytester):
    pytester.makeconftest("from tests.conftest import pytest_collection_modifyitems")
    pytester.makeini(INI)
    pytester.makepyfile(
        test_inner="""
        import pytest

        @pytest.mark.unit
        def test_marked():
            pass

        def test_forgotten():
            pass

        @pytest.mark.unit
        @pytest.mark.integration
        def test_undecided():
            pass
        """
    )

    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*exactly one tier marker*", "*test_forgotten: no tier", "*test_undecided: *, *"]
    )
    assert "test_marked" not in result.stderr.str()


def test_a_module_marker_gives_every_test_its_tier(pytester):
    pytester.makeconftest("from tests.conftest import pytest_collection_modifyitems")
    pytester.makeini(INI)
    pytester.makepyfile(
        test_inner="""
        import pytest

        pytestmark = pytest.mark.contract

        @pytest.mark.parametrize("n", [1, 2])
        def test_each(n):
            pass
        """
    )

    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-m", "contract")

    result.assert_outcomes(passed=2)
