"""Fixtures for llama_server's end-to-end tests: the shared models exported once, and servers
started on a free loopback port and driven with the official `openai` client.

The tests skip (with a message) when the shared data or the llama_server binary is absent.
KUIPER_SHARED_DIR, KUIPER_BIN_DIR (default build/bin) and KUIPER_TEST_MODELS (default
build/test_models) override where things are."""
import hashlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("KUIPER_SHARED_DIR", REPO.parent / "shared"))
BIN = Path(os.environ.get("KUIPER_BIN_DIR", REPO / "build" / "bin"))
MODELS_CACHE = Path(os.environ.get("KUIPER_TEST_MODELS", BIN.parent / "test_models"))

# (export.py source folder, tokenizer) of each shared model the tests serve.
TOKENIZERS = {"llama2-kjv": "llama2/tokenizer.model", "qwen2-kjv": "qwen2-kjv/tokenizer.json",
              "llama3-kjv": "llama3-kjv/tokenizer.json"}


def export(args: list[str]) -> Path:
    """tools/export.py OUT *args, cached by the arguments and the converter's source."""
    key = hashlib.sha256(" ".join(args).encode())
    for source in sorted((REPO / "tools").glob("*.py")):
        key.update(source.read_bytes())
    out = MODELS_CACHE / f"server_{key.hexdigest()[:16]}.bin"
    if not out.exists():
        MODELS_CACHE.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([sys.executable, str(REPO / "tools" / "export.py"), str(out), "-q", *args],
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="session")
def golden() -> dict:
    path = SHARED / "models" / "golden_public.json"
    if not path.is_file():
        pytest.skip(f"shared test data not found under {SHARED} (set KUIPER_SHARED_DIR)")
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def server_bin() -> Path:
    path = BIN / "llama_server"
    if not path.is_file():
        pytest.skip(f"{path} not built (it needs libcpp-httplib-dev; set KUIPER_BIN_DIR)")
    return path


def model_files(name: str) -> tuple[Path, Path]:
    """(exported model, tokenizer) of a shared model."""
    return export(["--hf", str(SHARED / "models" / name)]), SHARED / "models" / TOKENIZERS[name]


def random_model_files(tmp_dir: Path) -> tuple[Path, Path]:
    """llama2-kjv's shape with random weights: its text is noise that almost never reaches EOS, so
    a request runs to max_tokens (for tests that need a stream still going)."""
    config = tmp_dir / "random_config.json"
    config.write_text((SHARED / "models" / "llama2-kjv" / "config.json").read_text())
    return (export(["--random", str(config), "--tokenizer", str(SHARED / "models" / TOKENIZERS["llama2-kjv"])]),
            SHARED / "models" / TOKENIZERS["llama2-kjv"])


def _connect(url: str) -> tuple[http.client.HTTPConnection, str]:
    assert url.startswith("http://")
    host, _, path = url[len("http://"):].partition("/")
    return http.client.HTTPConnection(host, timeout=120), "/" + path


def http_request(url: str, body: bytes | None = None, headers: dict | None = None):
    """(status, headers, body) of one request: GET, or POST with a body (raw HTTP, for what the
    openai client cannot send)."""
    connection, path = _connect(url)
    try:
        connection.request("POST" if body is not None else "GET", path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


class HttpStream:
    """A POST whose response is read as it comes: status, and lines(), the "data: ..." lines.
    close() hangs up on the server."""

    def __init__(self, url: str, body: bytes, headers: dict):
        self.connection, path = _connect(url)
        self.connection.request("POST", path, body=body, headers={"Content-Type": "application/json", **headers})
        self.response = self.connection.getresponse()
        self.status = self.response.status

    def lines(self):
        while line := self.response.readline():
            line = line.decode().rstrip("\r\n")
            if line.startswith("data: "):
                yield line

    def close(self):
        self.response.close()
        self.connection.close()


class Server:
    """A running llama_server: its URL, clients, /metrics and stderr log."""

    def __init__(self, binary: Path, model: Path, tokenizer: Path, *args: str, api_key: str | None = None):
        cmd = [str(binary), str(model), str(tokenizer), "--port", "0", "-t", "1", *args]
        if api_key:
            cmd += ["--api-key", api_key]
        self.api_key = api_key
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.log: list[str] = []
        self._port: int | None = None
        self._ready = threading.Event()
        threading.Thread(target=self._read_log, daemon=True).start()
        if not self._ready.wait(120) or self._port is None:
            self.proc.kill()
            raise RuntimeError("llama_server did not start:\n" + "".join(self.log))
        self.url = f"http://127.0.0.1:{self._port}"

    def _read_log(self):
        for line in self.proc.stderr:
            self.log.append(line)
            if m := re.search(r"listening on http://[^:]+:(\d+)", line):
                self._port = int(m.group(1))
                self._ready.set()
        self._ready.set()

    def client(self, **kwargs):
        import openai
        return openai.OpenAI(base_url=self.url + "/v1", api_key=self.api_key or "none", max_retries=0,
                             timeout=120, **kwargs)

    def async_client(self, **kwargs):
        import openai
        return openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=self.api_key or "none", max_retries=0,
                                  timeout=300, **kwargs)

    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def metrics(self) -> dict[str, float]:
        status, _, body = http_request(self.url + "/metrics", headers=self.headers())
        assert status == 200, body
        text = body.decode()
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return values

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stop(self, sig=signal.SIGTERM, timeout=30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


@pytest.fixture(scope="session")
def start_server(server_bin, golden):
    """start_server(model_name, *args, api_key=None) -> Server, stopped at the end of the session."""
    started = []

    def start(name, *args, api_key=None, files=None):
        model, tokenizer = files or model_files(name)
        server = Server(server_bin, model, tokenizer, *args, api_key=api_key)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.stop(timeout=60)
