"""The CLI's layers and requirements.txt against ``hotpool dev``: publish a layer, deploy with
it, vendor dependencies from PyPI, and the messages when that cannot work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.main_server.test_cli import _cli, dev  # noqa: F401 (the fixture)

pytestmark = pytest.mark.integration

USES_LAYER = "import greet\n\ndef handler(event, context):\n    return greet.hello()\n"
USES_REQUESTS = (
    "import requests, six\n\n"
    "def handler(event, context):\n"
    "    return {'requests': requests.__version__, 'six': six.__version__}\n"
)


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_publish_a_layer_and_deploy_a_function_on_it(dev, tmp_path):  # noqa: F811
    cwd, env = dev
    layer = write(tmp_path / "greeting", {"python/greet.py": "def hello():\n    return 'hi'\n"})
    fn = write(tmp_path / "fn", {"main.py": USES_LAYER})

    published = _cli("layer", "publish", str(layer), "--description", "greetings", env=env, cwd=cwd)
    assert published.returncode == 0, published.stderr
    assert json.loads(published.stdout)["name"] == "greeting"
    deployed = _cli("deploy", str(fn), "--layer", "greeting:1", env=env, cwd=cwd)
    assert deployed.returncode == 0, deployed.stderr
    assert json.loads(deployed.stdout)["layers"] == ["greeting:1"]
    called = _cli("invoke", "fn", env=env, cwd=cwd)
    assert json.loads(called.stdout) == "hi", called.stderr

    listed = _cli("layer", "ls", env=env, cwd=cwd)
    assert "greeting:1" in listed.stdout and "greetings" in listed.stdout
    assert _cli("layer", "rm", "greeting", "1", env=env, cwd=cwd).returncode == 0
    assert "no layers published" in _cli("layer", "ls", env=env, cwd=cwd).stdout
    missing = _cli("deploy", str(fn), "--layer", "greeting:1", env=env, cwd=cwd)
    assert missing.returncode == 2 and "layer 'greeting:1' does not exist" in missing.stderr


def test_deploy_vendors_requirements_and_names_a_dependency_without_a_wheel(dev, tmp_path):  # noqa: F811
    cwd, env = dev
    env = {**env, "HOTPOOL_CACHE_DIR": str(tmp_path / "cache")}
    fn = write(
        tmp_path / "web",
        {"main.py": USES_REQUESTS, "requirements.txt": "requests==2.32.3\nsix==1.16.0\n"},
    )

    deployed = _cli("deploy", str(fn), env=env, cwd=cwd)
    assert deployed.returncode == 0, deployed.stderr
    called = _cli("invoke", "web", env=env, cwd=cwd)
    assert json.loads(called.stdout) == {"requests": "2.32.3", "six": "1.16.0"}, called.stderr
    assert len(list((tmp_path / "cache" / "requirements").iterdir())) == 1

    # --no-build uploads the code alone: the import fails in the container
    bare = _cli("deploy", str(fn), "--name", "bare", "--no-build", env=env, cwd=cwd)
    assert bare.returncode == 0, bare.stderr
    failed = _cli("invoke", "bare", env=env, cwd=cwd)
    assert failed.returncode == 1 and "No module named 'requests'" in failed.stderr

    write(fn, {"requirements.txt": "six==1.16.0\ndocopt==0.6.2\n"})
    refused = _cli("deploy", str(fn), env=env, cwd=cwd)
    assert refused.returncode == 2
    assert "docopt==0.6.2 has no wheel for the runtime" in refused.stderr
    assert "Traceback" not in refused.stderr
