"""Web apps on the frameworks' real Lambda adapters, each serving the same routes.

The adapters and frameworks are third-party and unchanged (Mangum, serverless-wsgi,
apig-wsgi, Django's own project, Powertools' resolvers); the routes below are the few lines
a user writes, the same in each framework so one set of web tests runs over all of them:

    GET  /items/<id>?q=   -> {"item_id": id, "q": q}        path parameters, query strings
    GET  /cookies/set     -> sets flavour=oatmeal           Set-Cookie
    GET  /cookies/get     -> {"flavour": <cookie>}          cookies in
    GET  /image.png       -> PIXEL_PNG (image/png)          binary responses
    POST /echo            -> {"received": <JSON body>}
    POST /form            -> {"name": <form field>}
    GET  /page            -> PAGE (HTML whose script adds <p id="js">)
    anything else         -> the app's own 404
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import replace

from tests.lambda_compat import pins
from tests.lambda_compat.apps import django_project, serverless_wsgi
from tests.lambda_compat.packages import App, read_tree, source, zip_package
from tests.lambda_compat.sources import vendored


def _png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)  # 1x1, 8-bit RGBA
    pixels = zlib.compress(b"\x00\xff\x80\x00\xff")
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


PIXEL_PNG = _png()
PAGE = (
    "<!doctype html><html><head><title>hotpool web function</title></head><body>"
    '<h1 id="greeting">Hello from {framework}</h1><script>'
    "document.body.insertAdjacentHTML('beforeend', '<p id=\"js\">rendered by a browser</p>')"
    "</script></body></html>"
)
# every app reads its image and page from files next to it
ASSETS = {"pixel.png": PIXEL_PNG}

FASTAPI_APP = source("""
    import os
    from fastapi import FastAPI, Form, Request, Response
    from fastapi.responses import HTMLResponse
    from mangum import Mangum

    HERE = os.path.dirname(__file__)
    PIXEL = open(os.path.join(HERE, "pixel.png"), "rb").read()
    PAGE = open(os.path.join(HERE, "page.html")).read()
    app = FastAPI()

    @app.get("/items/{item_id}")
    def item(item_id: int, q: str | None = None):
        return {"item_id": item_id, "q": q}

    @app.get("/cookies/set")
    def set_cookie(response: Response):
        response.set_cookie("flavour", "oatmeal")
        return {"set": True}

    @app.get("/cookies/get")
    def get_cookie(request: Request):
        return {"flavour": request.cookies.get("flavour")}

    @app.get("/image.png")
    def image():
        return Response(PIXEL, media_type="image/png")

    @app.post("/echo")
    async def echo(request: Request):
        return {"received": await request.json()}

    @app.post("/form")
    def form(name: str = Form(...)):
        return {"name": name}

    @app.get("/page", response_class=HTMLResponse)
    def page():
        return PAGE

    handler = Mangum(app)
""")

FLASK_APP = source("""
    import os
    from flask import Flask, jsonify, request

    HERE = os.path.dirname(__file__)
    PIXEL = open(os.path.join(HERE, "pixel.png"), "rb").read()
    PAGE = open(os.path.join(HERE, "page.html")).read()
    app = Flask(__name__)

    @app.get("/items/<int:item_id>")
    def item(item_id):
        return jsonify(item_id=item_id, q=request.args.get("q"))

    @app.get("/cookies/set")
    def set_cookie():
        response = jsonify(set=True)
        response.set_cookie("flavour", "oatmeal")
        return response

    @app.get("/cookies/get")
    def get_cookie():
        return jsonify(flavour=request.cookies.get("flavour"))

    @app.get("/image.png")
    def image():
        return app.response_class(PIXEL, mimetype="image/png")

    @app.post("/echo")
    def echo():
        return jsonify(received=request.get_json())

    @app.post("/form")
    def form():
        return jsonify(name=request.form["name"])

    @app.get("/page")
    def page():
        return PAGE
""")

# apig-wsgi's README: "make_lambda_handler(app, binary_support=True)"
APIG_WSGI_FLASK = source("""
    from apig_wsgi import make_lambda_handler
    from app import app

    handler = make_lambda_handler(app, binary_support=True)
""")
APIG_WSGI_DJANGO = source("""
    from apig_wsgi import make_lambda_handler
    from mysite.wsgi import application

    lambda_handler = make_lambda_handler(application, binary_support=True)
""")
DJANGO_SETTINGS = source("""
    from mysite.settings import *  # noqa: F403 (startproject's settings, unchanged)

    ROOT_URLCONF = "probe.urls"
    # as every Django app on Lambda sets it: requests arrive for the API's own host name
    ALLOWED_HOSTS = ["*"]
""")
DJANGO_URLS = source("""
    from django.urls import path

    from probe import views

    urlpatterns = [
        path("items/<int:item_id>", views.item),
        path("cookies/set", views.set_cookie),
        path("cookies/get", views.get_cookie),
        path("image.png", views.image),
        path("echo", views.echo),
        path("form", views.form),
        path("page", views.page),
    ]
""")
DJANGO_VIEWS = source("""
    import json
    import os

    from django.http import HttpResponse, JsonResponse
    from django.views.decorators.csrf import csrf_exempt

    HERE = os.path.dirname(os.path.dirname(__file__))
    PIXEL = open(os.path.join(HERE, "pixel.png"), "rb").read()
    PAGE = open(os.path.join(HERE, "page.html")).read()

    def item(request, item_id):
        return JsonResponse({"item_id": item_id, "q": request.GET.get("q")})

    def set_cookie(request):
        response = JsonResponse({"set": True})
        response.set_cookie("flavour", "oatmeal")
        return response

    def get_cookie(request):
        return JsonResponse({"flavour": request.COOKIES.get("flavour")})

    def image(request):
        return HttpResponse(PIXEL, content_type="image/png")

    @csrf_exempt
    def echo(request):
        return JsonResponse({"received": json.loads(request.body)})

    @csrf_exempt
    def form(request):
        return JsonResponse({"name": request.POST["name"]})

    def page(request):
        return HttpResponse(PAGE)
""")

POWERTOOLS_APP = source("""
    import json
    import os
    from http.cookies import SimpleCookie
    from urllib.parse import parse_qs

    from aws_lambda_powertools.event_handler import RESOLVER, Response, content_types
    from aws_lambda_powertools.shared.cookies import Cookie

    HERE = os.path.dirname(__file__)
    PIXEL = open(os.path.join(HERE, "pixel.png"), "rb").read()
    PAGE = open(os.path.join(HERE, "page.html")).read()
    app = RESOLVER()

    def cookie(name):
        event = app.current_event
        raw = "; ".join(event.get("cookies") or []) or event.headers.get("cookie", "")
        jar = SimpleCookie(raw)
        return jar[name].value if name in jar else None

    @app.get("/items/<item_id>")
    def item(item_id):
        return {"item_id": int(item_id), "q": app.current_event.get_query_string_value("q")}

    @app.get("/cookies/set")
    def set_cookie():
        # Powertools' cookies are Secure unless told: a browser sends them back over https
        # only, and this stack serves plain http
        return Response(200, content_types.APPLICATION_JSON, json.dumps({"set": True}),
                        cookies=[Cookie(name="flavour", value="oatmeal", secure=False)])

    @app.get("/cookies/get")
    def get_cookie():
        return {"flavour": cookie("flavour")}

    @app.get("/image.png")
    def image():
        return Response(200, "image/png", PIXEL)

    @app.post("/echo")
    def echo():
        return {"received": app.current_event.json_body}

    @app.post("/form")
    def form():
        return {"name": parse_qs(app.current_event.decoded_body)["name"][0]}

    @app.get("/page")
    def page():
        return Response(200, content_types.TEXT_HTML, PAGE)

    def lambda_handler(event, context):
        return app.resolve(event, context)
""")


def _assets(framework: str) -> dict[str, bytes]:
    return {**ASSETS, "page.html": PAGE.format(framework=framework).encode()}


def fastapi_mangum() -> App:
    files = {"main.py": FASTAPI_APP, **_assets("FastAPI")}
    return App("fastapi", "main.handler", zip_package(files, [vendored(list(pins.FASTAPI))]))


def flask_serverless_wsgi() -> App:
    return serverless_wsgi("flask-sls", {"app.py": FLASK_APP, **_assets("Flask")})


def flask_apig_wsgi() -> App:
    files = {"app.py": FLASK_APP, "apig.py": APIG_WSGI_FLASK, **_assets("Flask")}
    site = vendored([*pins.FLASK, pins.DJANGO[1]])
    return App("flask-apig", "apig.handler", zip_package(files, [site]), {"http_payload": "1.0"})


def django_apig_wsgi() -> App:
    files = {
        **read_tree(django_project()),
        "lambda_function.py": APIG_WSGI_DJANGO,
        "lambda_settings.py": DJANGO_SETTINGS,
        "probe/__init__.py": b"",
        "probe/urls.py": DJANGO_URLS,
        "probe/views.py": DJANGO_VIEWS,
        **_assets("Django"),
    }
    settings = {"env": {"DJANGO_SETTINGS_MODULE": "lambda_settings"}, "http_payload": "1.0"}
    code = zip_package(files, [vendored(list(pins.DJANGO))])
    return App("django", "lambda_function.lambda_handler", code, settings)


def powertools_http() -> App:
    """Powertools' APIGatewayHttpResolver: HTTP API payload 2.0 (the default)."""
    app = POWERTOOLS_APP.replace(b"RESOLVER", b"APIGatewayHttpResolver")
    files = {"app.py": app, **_assets("Powertools HTTP API")}
    code = zip_package(files, [vendored([pins.POWERTOOLS])])
    return App("pt-http", "app.lambda_handler", code)


def powertools_rest() -> App:
    """Powertools' APIGatewayRestResolver: REST API payload 1.0."""
    app = POWERTOOLS_APP.replace(b"RESOLVER", b"APIGatewayRestResolver")
    files = {"app.py": app, **_assets("Powertools REST API")}
    code = zip_package(files, [vendored([pins.POWERTOOLS])])
    return App("pt-rest", "app.lambda_handler", code, {"http_payload": "1.0"})


def on_rest_api(build: Callable[[], App], name: str) -> Callable[[], App]:
    """The same app deployed with payload 1.0, as behind a REST API: its adapter takes both."""
    return lambda: replace(build(), name=name, settings={"http_payload": "1.0"})


WEB_APPS = {
    "fastapi-mangum": fastapi_mangum,
    "fastapi-mangum-1.0": on_rest_api(fastapi_mangum, "fastapi-v1"),
    "flask-serverless-wsgi": flask_serverless_wsgi,
    "flask-serverless-wsgi-1.0": on_rest_api(flask_serverless_wsgi, "flask-sls-v1"),
    "flask-apig-wsgi": flask_apig_wsgi,
    "django-apig-wsgi": django_apig_wsgi,
    "powertools-http-2.0": powertools_http,
    "powertools-rest-1.0": powertools_rest,
}
