"""Every third-party source of the compatibility suite, pinned (README.md says what each proves).

Changing a pin changes the cache key, so the next run fetches and builds it anew.
"""

# PyPI: SAM CLI's `sam local generate-event` library and `sam init` python template, and the
# mustache renderer that library uses
SAM_CLI = "aws-sam-cli==1.170.0"
CHEVRON = "chevron==0.14.0"
# npm: Serverless Framework v2 (the last to ship its `serverless create` templates in the
# package; v3 downloads them) and the serverless-wsgi plugin (its Lambda handler files)
SERVERLESS = "serverless@2.72.4"
SERVERLESS_WSGI_NPM = "serverless-wsgi@3.1.0"
# npm, for the Node.js runtime: node-lambda's sample handler (a CommonJS callback handler in
# its package's index.js), and Express behind serverless-http, the common way to put an
# Express app on Lambda
NODE_LAMBDA = "node-lambda@1.3.0"
EXPRESS = ("serverless-http@4.0.0", "express@5.3.0")
# PyPI: the frameworks real Lambda apps are built on
POWERTOOLS = "aws-lambda-powertools==3.37.0"
PYDANTIC = "pydantic==2.12.5"  # for Powertools' parser
FASTAPI = ("fastapi==0.165.0", "mangum==0.22.0", "python-multipart==0.0.34")
FLASK = ("flask==3.1.3",)
DJANGO = ("django==5.2.19", "apig-wsgi==2.20.0")
# PyPI: Chalice, for its `chalice new-project` templates and the runtime files
# `chalice package` puts in every package (chalice/app.py, chalice/__init__.py)
CHALICE = "chalice==1.34.0"
# PyPI: a data-science package near Lambda's size limits (about 35 MB zipped, 160 MB unzipped;
# Lambda takes 50 and 250); 2.3.3 ships manylinux_2_28 wheels only, which the vendoring's
# platform list (up to bookworm's glibc 2.36) takes
PANDAS = "pandas==2.3.3"
