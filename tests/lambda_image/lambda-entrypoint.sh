#!/bin/sh
# As AWS's base images' /lambda-entrypoint.sh: outside Lambda (no AWS_LAMBDA_RUNTIME_API) the
# Runtime Interface Emulator serves the Runtime API and an invoke endpoint on port 8080 and
# runs the runtime interface client under it; inside Lambda (or hotpool) the client talks to
# the Runtime API it is given.
if [ $# -ne 1 ]; then
    echo "entrypoint requires the handler name to be the first argument" 1>&2
    exit 142
fi
export _HANDLER="$1"
if [ -z "${AWS_LAMBDA_RUNTIME_API:-}" ]; then
    exec /usr/local/bin/aws-lambda-rie /usr/bin/python3 -m awslambdaric "$@"
else
    exec /usr/bin/python3 -m awslambdaric "$@"
fi
