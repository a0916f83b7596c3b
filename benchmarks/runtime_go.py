"""The bench's custom-runtime function: a Go program speaking Lambda's Runtime API with Go's
standard library only, built once per source into a cache folder (``go`` must be installed).

It answers what the Python and Node.js bench functions answer, so the runtimes' figures
compare like with like.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

GO_SOURCE = """\
package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	api := "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2018-06-01/runtime/invocation/"
	for {
		resp, err := http.Get(api + "next")
		if err != nil {
			os.Exit(1)
		}
		id := resp.Header.Get("Lambda-Runtime-Aws-Request-Id")
		var event map[string]interface{}
		json.NewDecoder(resp.Body).Decode(&event)
		resp.Body.Close()
		if s, ok := event["sleep_s"].(float64); ok {
			time.Sleep(time.Duration(s * float64(time.Second)))
		}
		out, _ := json.Marshal(map[string]interface{}{"message": "hello", "event": event})
		answer, err := http.Post(api+id+"/response", "application/json", bytes.NewReader(out))
		if err != nil {
			os.Exit(1)
		}
		io.Copy(io.Discard, answer.Body)
		answer.Body.Close()
	}
}
"""
CACHE_DIR = Path.home() / ".cache" / "hotpool-bench"


def go_missing() -> str | None:
    return None if shutil.which("go") else "no go on this machine (apt-get install golang-go)"


def go_zip() -> bytes:
    """The function's zip: the static binary as an executable ``bootstrap``."""
    digest = hashlib.sha256(GO_SOURCE.encode()).hexdigest()[:16]
    folder = CACHE_DIR / f"go-{digest}"
    binary = folder / "bootstrap"
    if not binary.exists():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "main.go").write_text(GO_SOURCE)
        env = {**os.environ, "CGO_ENABLED": "0", "GOCACHE": str(CACHE_DIR / "gocache")}
        subprocess.run(
            ["go", "build", "-o", "bootstrap.tmp", "main.go"],
            cwd=folder, env=env, check=True, capture_output=True, timeout=600,
        )  # fmt: skip
        os.replace(folder / "bootstrap.tmp", binary)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16  # executable, as the relay demands
        archive.writestr(info, binary.read_bytes(), zipfile.ZIP_DEFLATED)
    return buffer.getvalue()
