"""``hotpool schedule add|ls|rm`` against ``hotpool dev``, and their one-line errors."""

from __future__ import annotations

import json

import pytest

from tests.main_server.test_cli import ROOT, _cli, dev  # noqa: F401 (the fixture)

pytestmark = pytest.mark.integration


def test_add_list_replace_and_remove_schedules(dev, tmp_path):  # noqa: F811
    cwd, env = dev
    deployed = _cli("deploy", str(ROOT / "examples" / "hello"), "--name", "hello", env=env, cwd=cwd)
    assert deployed.returncode == 0, deployed.stderr
    (tmp_path / "event.json").write_text('{"name": "cron"}')

    added = _cli(
        "schedule", "add", "hello", "nightly", "cron(0 2 * * ? *)", "--timezone",
        "Europe/Berlin", "--event", "@event.json", env=env, cwd=cwd,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    shown = json.loads(added.stdout)
    assert (shown["name"], shown["timezone"], shown["event"]) == (
        "nightly", "Europe/Berlin", {"name": "cron"},
    )  # fmt: skip
    assert len(shown["next_fires"]) == 3
    off = _cli("schedule", "add", "hello", "often", "rate(5 minutes)", "--disabled",
               "--event", '{"n": 1}', env=env, cwd=cwd)  # fmt: skip
    assert off.returncode == 0, off.stderr
    assert json.loads(off.stdout)["enabled"] is False

    listed = _cli("schedule", "ls", "hello", env=env, cwd=cwd)
    assert listed.returncode == 0, listed.stderr
    nightly, often = listed.stdout.splitlines()
    assert nightly.split()[:3] == ["nightly", "cron(0", "2"] and "Europe/Berlin" in nightly
    assert nightly.split()[-1] == shown["next_fires"][0]
    assert often.split() == ["often", "rate(5", "minutes)", "UTC", "disabled"]

    replaced = _cli("schedule", "add", "hello", "often", "rate(1 hour)", env=env, cwd=cwd)
    assert json.loads(replaced.stdout)["enabled"] is True

    removed = _cli("schedule", "rm", "hello", "nightly", env=env, cwd=cwd)
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout == "deleted schedule nightly of hello\n"
    assert _cli("schedule", "ls", "hello", env=env, cwd=cwd).stdout.split()[0] == "often"
    assert _cli("schedule", "rm", "hello", "often", env=env, cwd=cwd).returncode == 0
    assert _cli("schedule", "ls", "hello", env=env, cwd=cwd).stdout == "hello has no schedules\n"


ERRORS = [
    (("add", "hello", "s", "cron(0 12 * * * *)"),
     "error 400: 'cron(0 12 * * * *)': exactly one of day-of-month and day-of-week"),
    (("add", "hello", "s", "rate(5 minutes)", "--timezone", "Nowhere/City"),
     "error 400: timezone 'Nowhere/City' is not an IANA time zone name"),
    (("add", "hello", "s", "rate(5 minutes)", "--event", "{not json"),
     "--event is not valid JSON"),
    (("add", "hello", "s", "rate(5 minutes)", "--event", "@missing.json"),
     "--event @missing.json: cannot read the file"),
    (("add", "nope", "s", "rate(5 minutes)"), "error 404: function 'nope' does not exist"),
    (("rm", "hello", "nope"), "error 404: schedule 'nope' of function 'hello' does not exist"),
    (("ls", "nope"), "error 404: function 'nope' does not exist"),
]  # fmt: skip


def test_errors_are_one_line(dev):  # noqa: F811
    cwd, env = dev
    deployed = _cli("deploy", str(ROOT / "examples" / "hello"), "--name", "hello", env=env, cwd=cwd)
    assert deployed.returncode == 0, deployed.stderr

    for args, says in ERRORS:
        failed = _cli("schedule", *args, env=env, cwd=cwd)

        assert failed.returncode == 2, (args, failed.stdout)
        [line] = failed.stderr.splitlines()
        assert line.startswith("hotpool: ") and says in line, line
    assert _cli("schedule", "ls", "hello", env=env, cwd=cwd).stdout == "hello has no schedules\n"
