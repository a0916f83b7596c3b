"""Node.js functions nobody on hotpool wrote, packaged as their authors ship them: the
Serverless Framework's `serverless create` Node templates (CommonJS, and ES modules with a
callback), node-lambda's sample handler (a CommonJS callback), and an Express app behind
serverless-http (the app's few routes are the only code written here)."""

from __future__ import annotations

import json

from tests.lambda_compat import pins
from tests.lambda_compat.apps import serverless_template
from tests.lambda_compat.packages import App, read_tree, zip_package
from tests.lambda_compat.sources import npm_installed, npm_package

NODE = {"runtime": "nodejs", "http": "public"}


def serverless_nodejs() -> App:
    """`serverless create --template aws-nodejs`: handler.js, `module.exports.hello = async`."""
    return App("sls-nodejs", "handler.hello", zip_package(serverless_template("aws-nodejs")), NODE)


def serverless_ecma_script() -> App:
    """`serverless create --template aws-nodejs-ecma-script`: first.js and second.js, each
    `export const hello = (event, context, callback) => ...`. The template has webpack and
    Babel turn them into CommonJS; Node runs ES modules itself, so its package.json gets
    `"type": "module"`, the one change, as a project that drops the bundler makes it."""
    files = serverless_template("aws-nodejs-ecma-script")
    manifest = json.loads(files["package.json"])
    files["package.json"] = json.dumps({**manifest, "type": "module"}).encode()
    return App("sls-esm", "first.hello", zip_package(files), NODE)


def node_lambda_sample() -> App:
    """node-lambda's own index.js (what its `setup` command starts a project with):
    `exports.handler = (event, context, callback) => { console.log(...); callback(null) }`."""
    files = {"index.js": (npm_package(pins.NODE_LAMBDA) / "index.js").read_bytes()}
    return App("node-lambda", "index.handler", zip_package(files), NODE)


EXPRESS_APP = b"""\
const serverless = require('serverless-http');
const express = require('express');

const app = express();
app.use(express.json());
app.get('/items/:id', (req, res) => res.json({ id: req.params.id, q: req.query.q }));
app.post('/echo', (req, res) => res.status(201).set('X-App', 'express').json({ got: req.body }));
app.get('/cookie', (req, res) => res.cookie('seen', 'yes').send(req.headers.cookie || 'none'));

module.exports.handler = serverless(app);
"""


def express_app() -> App:
    """An Express app behind serverless-http, its node_modules installed by npm."""
    installed = npm_installed(list(pins.EXPRESS))
    files = {"app.js": EXPRESS_APP, **read_tree(installed / "node_modules", "node_modules/")}
    return App("express", "app.handler", zip_package(files), NODE)
