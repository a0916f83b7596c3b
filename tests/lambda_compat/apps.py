"""The real third-party handlers of the suite, each as an ``App`` ready to deploy.

Every handler here is public code nobody on hotpool wrote, deployed unchanged: SAM CLI's
`sam init` hello-world, the Serverless Framework's `serverless create` templates, the
serverless-wsgi plugin's Lambda handler, AWS's documentation samples (docs.py) and the web
frameworks' Lambda adapters (webapps.py holds the small apps those adapters serve).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.lambda_compat import pins
from tests.lambda_compat.events import sam_files
from tests.lambda_compat.packages import App, read_tree, zip_package
from tests.lambda_compat.sources import cached, npm_package, unpacked_wheel, vendored

SAM_TEMPLATE = "samcli/lib/init/templates/cookiecutter-aws-sam-hello-python"
SAM_PROJECT = f"{SAM_TEMPLATE}/{{{{cookiecutter.project_name}}}}"
SLS_TEMPLATES = "lib/plugins/create/templates"


def sam_project() -> Path:
    """The project `sam init --runtime python3.x --app-template hello-world` writes."""
    return sam_files() / SAM_PROJECT


def sam_hello_world() -> App:
    """`sam init` hello-world, its CodeUri (hello_world/) as the package: app.lambda_handler."""
    code = zip_package(read_tree(sam_project() / "hello_world"))
    return App("sam-hello", "app.lambda_handler", code)


def sam_hello_world_project() -> App:
    """The same, the whole project as the package, the handler named by its folder as
    Serverless and CDK apps do: hello_world/app.lambda_handler."""
    return App(
        "sam-project", "hello_world/app.lambda_handler", zip_package(read_tree(sam_project()))
    )


def serverless_template(template: str) -> dict[str, bytes]:
    return read_tree(npm_package(pins.SERVERLESS) / SLS_TEMPLATES / template)


def serverless_python3() -> App:
    """`serverless create --template aws-python3`: handler.hello."""
    return App("sls-python3", "handler.hello", zip_package(serverless_template("aws-python3")))


def serverless_python3_in_src() -> App:
    """The aws-python3 template's handler.py kept under src/, as a Serverless service with
    `handler: src/handler.hello` has it."""
    files = {f"src/{n}": d for n, d in serverless_template("aws-python3").items()}
    return App("sls-src", "src/handler.hello", zip_package(files))


def serverless_python_docker() -> App:
    """`serverless create --template aws-python-docker`'s app.py: app.handler."""
    return App("sls-docker", "app.handler", zip_package(serverless_template("aws-python-docker")))


def serverless_wsgi(name: str, app_files: dict[str, bytes], *, app: str = "app.app") -> App:
    """A Flask app behind the serverless-wsgi plugin's own handler (wsgi_handler.handler),
    packaged as `serverless deploy` packages it: the plugin's wsgi_handler.py and
    serverless_wsgi.py, the `.serverless-wsgi` file naming the app, the vendored Flask."""
    plugin = npm_package(pins.SERVERLESS_WSGI_NPM)
    files = {
        "wsgi_handler.py": (plugin / "wsgi_handler.py").read_bytes(),
        "serverless_wsgi.py": (plugin / "serverless_wsgi.py").read_bytes(),
        ".serverless-wsgi": json.dumps({"app": app}).encode(),
        **app_files,
    }
    return App(name, "wsgi_handler.handler", zip_package(files, [vendored(list(pins.FLASK))]))


def serverless_wsgi_readme_app() -> dict[str, bytes]:
    """The "regular Flask application" of serverless-wsgi's README (/cats and /dogs/<id>)."""
    readme = (npm_package(pins.SERVERLESS_WSGI_NPM) / "README.md").read_text()
    start = readme.index("```python\nfrom flask import Flask")
    block = readme[start + len("```python\n") : readme.index("```", start + 3)]
    return {"api.py": block.encode()}


def django_project() -> Path:
    """A project made by Django's own `django-admin startproject mysite` (its files only)."""

    def startproject(folder: Path) -> None:
        site = vendored(list(pins.DJANGO))
        subprocess.run(
            [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); "
             "from django.core.management import execute_from_command_line as run; "
             "run(['django-admin', 'startproject', 'mysite', sys.argv[1]])", str(folder)],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip

    return cached("django-project", [*pins.DJANGO], startproject)


def chalice_app(template: str, name: str, handler: str) -> App:
    """`chalice new-project --project-type TEMPLATE` packaged as `chalice package` does:
    the app's app.py (its {{app_name}} filled in) beside Chalice's runtime files."""
    wheel = unpacked_wheel(
        pins.CHALICE, ("chalice/app.py", "chalice/__init__.py", "chalice/templates/")
    )
    app_py = (wheel / "chalice/templates" / template / "app.py").read_bytes()
    files = {
        "app.py": app_py.replace(b"{{app_name}}", name.encode()),
        "chalice/app.py": (wheel / "chalice/app.py").read_bytes(),
        "chalice/__init__.py": (wheel / "chalice/__init__.py").read_bytes(),
    }
    return App(name, handler, zip_package(files))
