"""`se-local serve` on 127.0.0.1 with a real HTTP client (urllib): models, chat completions
streamed and not, the same reply as se_local.Llama in this process; clear errors."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the server extra is not installed: pip install 'se-local[server]'")

THREADS = 2
MESSAGES = [{"role": "user", "content": "Tell me a story about a lighthouse."}]
READY_TIMEOUT = 120  # seconds for the server to load the model and listen
REQUEST_TIMEOUT = 120


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_env():
    import se_local

    env = dict(os.environ)
    root = str(Path(se_local.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(NO_COLOR="1", PYTHONIOENCODING="utf-8", COLUMNS="200")
    return env


def post(url, body, api_key=None):
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    return urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT)


@pytest.fixture(scope="module")
def server(smollm2_path, pkg_native, tmp_path_factory):
    """``se-local serve`` in a subprocess on a free loopback port; yields its base URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "stderr.txt"
    with open(log, "w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "se_local", "serve", "--port", str(port), "--target-ctx", "1024",
             "--threads", str(THREADS), "--api-key", "sesame"],
            stdout=subprocess.DEVNULL, stderr=stderr, env=cli_env(),
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"se-local serve exited with {proc.returncode}:\n{log.read_text()}")
            try:
                request = urllib.request.Request(f"{base}/v1/models", headers={"Authorization": "Bearer sesame"})
                with urllib.request.urlopen(request, timeout=5) as r:
                    models = json.load(r)
                break
            except (urllib.error.URLError, ConnectionError, socket.timeout):
                if time.monotonic() > deadline:
                    pytest.fail(f"se-local serve did not answer in {READY_TIMEOUT} s:\n{log.read_text()}")
                time.sleep(0.5)
        yield base, models, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # what Ctrl-C does: uvicorn shuts down cleanly
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def local_llama(smollm2_path, pkg_native):
    """se_local.Llama in this process, opened like the server's model."""
    from se_local import Llama

    llm = Llama(smollm2_path, target_ctx=1024, n_threads=THREADS, n_threads_batch=THREADS)
    yield llm
    llm.close()


def test_models(server):
    _, models, log = server
    assert [m["id"] for m in models["data"]] == ["SmolLM2-135M-Instruct.Q4_1"]
    assert "n_ctx=1024" in log.read_text() and "plain attention" in log.read_text()


def test_api_key_is_required(server):
    base, _, _ = server
    with pytest.raises(urllib.error.HTTPError) as e:
        post(f"{base}/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 1})
    assert e.value.code == 401


def test_chat_completion(server, local_llama):
    base, _, _ = server
    body = {"messages": MESSAGES, "max_tokens": 16, "temperature": 0}
    with post(f"{base}/v1/chat/completions", body, api_key="sesame") as r:
        out = json.load(r)
    choice = out["choices"][0]
    expected = local_llama.create_chat_completion(messages=MESSAGES, max_tokens=16, temperature=0)
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == expected["choices"][0]["message"]["content"]
    assert choice["finish_reason"] == expected["choices"][0]["finish_reason"]
    assert out["usage"] == expected["usage"]


def test_chat_completion_streamed(server, local_llama):
    base, _, _ = server
    body = {"messages": MESSAGES, "max_tokens": 16, "temperature": 0, "stream": True}
    events = []
    with post(f"{base}/v1/chat/completions", body, api_key="sesame") as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        for raw in r:  # server-sent events, one "data: ..." line each
            line = raw.decode().strip()
            if line.startswith("data: "):
                events.append(line[len("data: "):])
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert len(chunks) > 3  # streamed piece by piece, not in one block
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    expected = local_llama.create_chat_completion(messages=MESSAGES, max_tokens=16, temperature=0)
    assert text == expected["choices"][0]["message"]["content"]


def test_completion(server):
    base, _, _ = server
    body = {"prompt": "Once upon a time,", "max_tokens": 4, "temperature": 0}
    with post(f"{base}/v1/completions", body, api_key="sesame") as r:
        out = json.load(r)
    assert out["choices"][0]["text"] and out["usage"]["completion_tokens"] <= 4


# ---------------------------------------------------------------------------
# Errors before anything loads
# ---------------------------------------------------------------------------


def test_port_in_use(pkg_cli):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = pkg_cli("serve", "--port", port)
    assert r.returncode == 1
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0] and "--port" in lines[0]


def test_missing_server_extra_is_a_clear_error():
    code = (
        "import sys; sys.modules['fastapi'] = None\n"  # as if the extra were not installed
        "from se_local.cli import main; main(['serve'])\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), timeout=120)
    assert r.returncode == 1
    assert "fastapi missing" in r.stderr and "pip install 'se-local[server]'" in r.stderr
    assert "Traceback" not in r.stderr
