"""Custom runtimes (``runtime=provided``) whose Runtime API side nobody on hotpool wrote.

- AWS's own Python runtime interface client, ``awslambdaric`` from PyPI, vendored into the
  package and started by the bootstrap AWS documents for it (``python3 -m awslambdaric``).
- AWS's shell bootstrap and ``function.sh`` from the Lambda developer guide's custom-runtime
  tutorial, verbatim (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-walkthrough.html).
- AWS's Node.js runtime interface client, ``aws-lambda-ric`` from npm (its install builds
  aws-lambda-cpp and curl from the sources it bundles: cmake, autoconf, automake, libtool and
  g++ are needed), started as its README's Dockerfile starts it (``aws-lambda-ric <handler>``).
- A Go and a C++ function, each a Runtime API loop as the Lambda developer guide documents the
  API (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html), built here by the test
  with Debian's ``golang-go`` and ``g++``: Go with its standard library's HTTP client, C++
  with plain sockets (HTTP/1.1, one connection a request).

Every function answers ``{"name": ...}`` with a greeting, fails with a function error without
a name, and fails its init when the environment holds ``FAIL_INIT``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.lambda_compat.sources import cached, vendored
from tests.manager.provided_kit import provided_zip
from tests.services import missing_service

AWSLAMBDARIC = "awslambdaric==4.2.2"
NODE_RIC = "aws-lambda-ric@3.3.0"

# the bootstrap of a function on awslambdaric (its README's Dockerfile runs the same command)
AWSLAMBDARIC_BOOTSTRAP = """\
#!/bin/sh
exec python3 -m awslambdaric "$_HANDLER"
"""
AWSLAMBDARIC_APP = """\
import os

if os.environ.get("FAIL_INIT"):
    raise RuntimeError("cannot load the configuration")


def handler(event, context):
    if not event.get("name"):
        raise ValueError("no name given")
    print("python handling", context.aws_request_id)
    return {"greeting": "hello " + event["name"], "request_id": context.aws_request_id,
            "remaining_ms": context.get_remaining_time_in_millis(),
            "arn": context.invoked_function_arn}
"""

NODE_RIC_BOOTSTRAP = """\
#!/bin/sh
exec node node_modules/aws-lambda-ric/bin/index.mjs "$_HANDLER"
"""
NODE_RIC_APP = """\
if (process.env.FAIL_INIT) {
  throw new Error("cannot load the configuration");
}

exports.handler = async (event, context) => {
  if (!event.name) {
    throw new Error("no name given");
  }
  console.log("node handling", context.awsRequestId);
  return { greeting: "hello " + event.name, request_id: context.awsRequestId };
};
"""

# Verbatim from the tutorial ("Example bootstrap", "Example function.sh"). It is a bash script
# under #!/bin/sh (Amazon Linux's sh is bash): ``source`` and ``pipefail`` are not POSIX.
# AWS's tutorial runtime ("Building a custom runtime", docs.aws.amazon.com/lambda), kept in
# examples/hello_provided with one change, bash named on its interpreter line (Debian's sh is
# dash); here it is AWS's text again, #!/bin/sh and all
_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hello_provided"
SHELL_BOOTSTRAP = (_EXAMPLE / "bootstrap").read_text().replace("#!/bin/bash", "#!/bin/sh", 1)
SHELL_FUNCTION = (_EXAMPLE / "function.sh").read_text()

GO_MAIN = """\
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
)

var api = "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2018-06-01/runtime"

func post(url string, body []byte, errorType string) {
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	if errorType != "" {
		req.Header.Set("Lambda-Runtime-Function-Error-Type", errorType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "post failed:", err)
		os.Exit(1)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

func failure(message, errorType string) []byte {
	out, _ := json.Marshal(map[string]interface{}{
		"errorMessage": message, "errorType": errorType, "stackTrace": []string{"main.go"}})
	return out
}

func main() {
	if os.Getenv("FAIL_INIT") != "" {
		post(api+"/init/error", failure("cannot load the configuration", "ConfigError"),
			"Runtime.ConfigError")
		os.Exit(1)
	}
	for {
		resp, err := http.Get(api + "/invocation/next")
		if err != nil {
			fmt.Fprintln(os.Stderr, "next failed:", err)
			os.Exit(1)
		}
		id := resp.Header.Get("Lambda-Runtime-Aws-Request-Id")
		deadline := resp.Header.Get("Lambda-Runtime-Deadline-Ms")
		payload, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var event map[string]interface{}
		json.Unmarshal(payload, &event)
		fmt.Println("go handling", id)
		name, _ := event["name"].(string)
		if name == "" {
			post(api+"/invocation/"+id+"/error", failure("no name given", "MissingName"),
				"MissingName")
			continue
		}
		out, _ := json.Marshal(map[string]string{"greeting": "hello " + name,
			"request_id": id, "deadline_ms": deadline, "handler": os.Getenv("_HANDLER")})
		post(api+"/invocation/"+id+"/response", out, "")
	}
}
"""

CPP_MAIN = r"""
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

static std::string host, port;

// One HTTP/1.1 request on its own connection; the whole answer (head and body).
static std::string request(const std::string& method, const std::string& path,
                           const std::string& body, const std::string& extra = "") {
    addrinfo hints{}, *found = nullptr;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0) std::exit(1);
    int fd = socket(found->ai_family, found->ai_socktype, found->ai_protocol);
    if (connect(fd, found->ai_addr, found->ai_addrlen) != 0) std::exit(1);
    freeaddrinfo(found);
    std::string head = method + " /2018-06-01/runtime" + path + " HTTP/1.1\r\nHost: " + host +
        "\r\nConnection: close\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" +
        extra + "\r\n";
    std::string out = head + body;
    for (size_t sent = 0; sent < out.size();) {
        ssize_t n = send(fd, out.data() + sent, out.size() - sent, 0);
        if (n <= 0) std::exit(1);
        sent += n;
    }
    std::string answer;
    char buffer[65536];
    for (ssize_t n; (n = recv(fd, buffer, sizeof buffer, 0)) > 0;) answer.append(buffer, n);
    close(fd);
    return answer;
}

static std::string header(const std::string& answer, const std::string& name) {
    std::string lower = answer;
    for (auto& c : lower) c = std::tolower(c);
    size_t at = lower.find("\r\n" + name + ":");
    if (at == std::string::npos) return "";
    size_t start = answer.find_first_not_of(' ', at + name.size() + 3);
    return answer.substr(start, answer.find("\r\n", start) - start);
}

int main() {
    std::string api = std::getenv("AWS_LAMBDA_RUNTIME_API");
    host = api.substr(0, api.rfind(':'));
    port = api.substr(api.rfind(':') + 1);
    if (std::getenv("FAIL_INIT")) {
        request("POST", "/init/error",
                "{\"errorMessage\":\"cannot load the configuration\","
                "\"errorType\":\"ConfigError\"}",
                "Lambda-Runtime-Function-Error-Type: Runtime.ConfigError\r\n");
        return 1;
    }
    for (;;) {
        std::string answer = request("GET", "/invocation/next", "");
        std::string id = header(answer, "lambda-runtime-aws-request-id");
        std::string event = answer.substr(answer.find("\r\n\r\n") + 4);
        std::cout << "c++ handling " << id << std::endl;
        // the event is {"name": "<name>"} (a real function would use a JSON library)
        size_t key = event.find("\"name\"");
        size_t open = key == std::string::npos ? key : event.find('"', event.find(':', key));
        if (open == std::string::npos) {
            request("POST", "/invocation/" + id + "/error",
                    "{\"errorMessage\":\"no name given\",\"errorType\":\"MissingName\"}",
                    "Lambda-Runtime-Function-Error-Type: MissingName\r\n");
            continue;
        }
        std::string name = event.substr(open + 1, event.find('"', open + 1) - open - 1);
        request("POST", "/invocation/" + id + "/response",
                "{\"greeting\":\"hello " + name + "\",\"request_id\":\"" + id + "\"}");
    }
}
"""


def awslambdaric_package(app: dict[str, str] | None = None) -> bytes:
    """The handler's files (``app``, else app.py above) and awslambdaric (with its
    dependencies) at the package's root."""
    site = vendored([AWSLAMBDARIC])
    files: dict[str, str | bytes] = {
        "bootstrap": AWSLAMBDARIC_BOOTSTRAP,
        **(app or {"app.py": AWSLAMBDARIC_APP}),
    }
    executable = ["bootstrap"]
    for path in sorted(site.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.name != ".spec.json":
            name = str(path.relative_to(site))
            files[name] = path.read_bytes()
            if path.stat().st_mode & 0o111:
                executable.append(name)
    return provided_zip(files, tuple(executable))


def node_ric_package(app: str = NODE_RIC_APP) -> bytes:
    """index.js (``app``) and aws-lambda-ric (what it needs at run time: package.json, bin/,
    dist/ with its compiled rapid-client.node) under node_modules."""
    from tests.lambda_compat.sources import run

    for tool in ("npm", "node", "cmake", "autoreconf", "libtoolize", "g++", "make"):
        if shutil.which(tool) is None:
            missing_service(f"{tool} is not installed: npm builds {NODE_RIC} with it")

    def install(folder: Path) -> None:
        (folder / "package.json").write_text('{"name": "ric-test", "private": true}')
        run(["npm", "install", "--no-audit", "--no-fund", "--silent", NODE_RIC],
            what=NODE_RIC, cwd=folder)  # fmt: skip

    package = cached("npm-install", [NODE_RIC], install) / "node_modules" / "aws-lambda-ric"
    files: dict[str, str | bytes] = {"bootstrap": NODE_RIC_BOOTSTRAP, "index.js": app}
    executable = ["bootstrap"]
    for path in sorted(package.rglob("*")):
        relative = path.relative_to(package)
        needed = relative.parts[0] in ("bin", "dist") or str(relative) == "package.json"
        if path.is_file() and needed:
            name = f"node_modules/aws-lambda-ric/{relative}"
            files[name] = path.read_bytes()
            if path.stat().st_mode & 0o111:
                executable.append(name)
    return provided_zip(files, tuple(executable))


def shell_package() -> bytes:
    return provided_zip(
        {"bootstrap": SHELL_BOOTSTRAP, "function.sh": SHELL_FUNCTION}, ("bootstrap", "function.sh")
    )


def _compiled(kind: str, tool: str, source_name: str, source: str, command: list[str]) -> Path:
    if shutil.which(tool) is None:
        missing_service(f"{tool} is not installed: it builds the {kind} custom runtime")

    def build(folder: Path) -> None:
        (folder / source_name).write_text(source)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(folder),
               "GOCACHE": str(folder / ".gocache"), "CGO_ENABLED": "0"}  # fmt: skip
        done = subprocess.run(
            command, cwd=folder, capture_output=True, text=True, timeout=600, env=env
        )
        assert done.returncode == 0, done.stdout + done.stderr
        shutil.rmtree(folder / ".gocache", ignore_errors=True)

    return cached(kind, [source, *command], build) / "bootstrap"


def go_package() -> bytes:
    """The Go loop, built into a static binary named ``bootstrap``."""
    binary = _compiled("go", "go", "main.go", GO_MAIN,
                       ["go", "build", "-o", "bootstrap", "main.go"])  # fmt: skip
    return provided_zip({"bootstrap": binary.read_bytes()})


def cpp_package() -> bytes:
    """The C++ loop, built with g++ into ``bootstrap`` (libstdc++ linked dynamically)."""
    binary = _compiled("cpp", "g++", "main.cpp", CPP_MAIN,
                       ["g++", "-O2", "-std=c++17", "-o", "bootstrap", "main.cpp"])  # fmt: skip
    return provided_zip({"bootstrap": binary.read_bytes()})


# A Go function streaming its response as Lambda's Runtime API documents it, on Go's standard
# library: a chunked POST in streaming mode (each write one chunk), an error in its declared
# trailers, and for a web call the http-integration prelude. It writes three timestamped
# parts, fails after them when the event says "fail".
GO_STREAM_MAIN = """\
package main

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

var api = "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2018-06-01/runtime"

func respond(id string, event string) {
	reader, writer := io.Pipe()
	req, _ := http.NewRequest("POST", api+"/invocation/"+id+"/response", reader)
	req.Header.Set("Lambda-Runtime-Function-Response-Mode", "streaming")
	req.Trailer = http.Header{"Lambda-Runtime-Function-Error-Type": nil,
		"Lambda-Runtime-Function-Error-Body": nil}
	web := strings.Contains(event, "rawPath")
	if web {
		req.Header.Set("Content-Type", "application/vnd.awslambda.http-integration-response")
	}
	go func() {
		if web {
			writer.Write([]byte(`{"statusCode": 202, "headers": {"X-Lang": "go"}}`))
			writer.Write(make([]byte, 8))
		}
		for i := 0; i < 3; i++ {
			fmt.Fprintf(writer, "part %d at %d\\n", i, time.Now().UnixMilli())
			time.Sleep(300 * time.Millisecond)
		}
		if strings.Contains(event, "fail") {
			body := `{"errorMessage": "go failed mid-stream", "errorType": "GoError"}`
			req.Trailer.Set("Lambda-Runtime-Function-Error-Type", "GoError")
			req.Trailer.Set("Lambda-Runtime-Function-Error-Body",
				base64.StdEncoding.EncodeToString([]byte(body)))
		}
		writer.Close()
	}()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println("response cut:", err)
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

func main() {
	for {
		resp, err := http.Get(api + "/invocation/next")
		if err != nil {
			os.Exit(1)
		}
		event, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		respond(resp.Header.Get("Lambda-Runtime-Aws-Request-Id"), string(event))
	}
}
"""


def go_stream_binary() -> Path:
    """The streaming Go function, built into a static binary named ``bootstrap``."""
    return _compiled("go", "go", "main.go", GO_STREAM_MAIN,
                     ["go", "build", "-o", "bootstrap", "main.go"])  # fmt: skip


def go_stream_package() -> bytes:
    return provided_zip({"bootstrap": go_stream_binary().read_bytes()})
