"""Real HTTP servers for testing teacher clients (a plain helper module: import it, it defines no fixtures).

Two kinds:

- :func:`start_transformers_serve` / :func:`stop_transformers_serve`: a real ``transformers serve`` process
  serving a local model folder on 127.0.0.1 (OpenAI-compatible, CPU). The server is pinned to the folder, so the
  request's ``model`` must be the folder path exactly as given (``proc.model``) or be omitted; ``GET /v1/models``
  lists only the Hugging Face cache, not the pinned folder, so readiness is checked with ``GET /health``.
- :class:`FaultyOpenAIServer`: an in-process OpenAI-compatible ``POST /v1/chat/completions`` endpoint on
  127.0.0.1 (stdlib ``ThreadingHTTPServer`` in a background thread) that plays a scripted queue of behaviours
  (:func:`ok`, :func:`status`, :func:`drop`, :func:`malformed`, :func:`empty`, :func:`delay`) and records every
  request it receives.

Example:
    >>> from _servers import FaultyOpenAIServer, ok, status
    >>> with FaultyOpenAIServer() as server:  # doctest: +SKIP
    ...     server.script(status(429, retry_after=1), ok("hello", finish_reason="length"))
    ...     teacher = OpenAITeacher("m", server.base_url)
    ...     ...
    ...     assert len(server.requests) == 2 and server.max_in_flight <= 64
"""

from __future__ import annotations

import collections
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# ---------------------------------------------------------------------------------------------------------------
# Ports and `transformers serve`
# ---------------------------------------------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it; another process could still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class ServeProcess(subprocess.Popen):
    """A ``transformers serve`` process, with what a client needs to talk to it.

    Attributes:
        base_url: ``http://127.0.0.1:<port>/v1``.
        model: the model name requests must carry: the folder path exactly as passed on the command line.
        log_path: file receiving the server's stdout and stderr.
    """

    base_url: str
    model: str
    log_path: Path


def _transformers_cli() -> list[str]:
    script = Path(sys.executable).with_name("transformers")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "transformers.cli.transformers"]


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(could not read {path}: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


def start_transformers_serve(
    model_dir: str | os.PathLike,
    port: int | None = None,
    *,
    timeout: float = 120.0,
    extra_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> ServeProcess:
    """Start ``transformers serve <model_dir> --host 127.0.0.1 --port <port> --device cpu`` and wait until
    ``GET /health`` answers 200 (the pinned model is loaded before the server listens; ~6 s for SmolLM2-135M on
    2 CPU cores).

    Always pair with :func:`stop_transformers_serve` (``try/finally`` or a fixture). Raises ``RuntimeError`` with
    the tail of the server's log if it exits or is not ready within ``timeout`` seconds.

    Example:
        >>> proc = start_transformers_serve(resolve_model("smollm2-135m-instruct"))  # doctest: +SKIP
        >>> try:
        ...     teacher = OpenAITeacher(proc.model, proc.base_url)
        ... finally:
        ...     stop_transformers_serve(proc)
    """
    port = free_port() if port is None else port
    model = str(model_dir)
    log_file = tempfile.NamedTemporaryFile(prefix="transformers-serve-", suffix=".log", delete=False)
    command = [
        *_transformers_cli(),
        "serve",
        model,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--device",
        "cpu",
        *extra_args,
    ]
    process_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    proc = ServeProcess(command, stdout=log_file, stderr=subprocess.STDOUT, env=process_env, start_new_session=True)
    log_file.close()
    proc.base_url, proc.model, proc.log_path = f"http://127.0.0.1:{port}/v1", model, Path(log_file.name)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(
                f"`{' '.join(command)}` exited with code {proc.returncode} before it was ready. "
                f"Log tail ({proc.log_path}):\n{_log_tail(proc.log_path)}"
            )
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                if response.status == 200:
                    return proc
        except (urllib.error.URLError, OSError):
            pass  # not listening yet
        if time.monotonic() > deadline:
            stop_transformers_serve(proc)
            raise RuntimeError(
                f"`{' '.join(command)}` was not ready after {timeout:.0f} s (GET /health). "
                f"Log tail ({proc.log_path}):\n{_log_tail(proc.log_path)}"
            )
        time.sleep(0.5)


def stop_transformers_serve(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """Stop a server started by :func:`start_transformers_serve` (SIGTERM to its process group, then SIGKILL)."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)  # its own session, started by us: the group id is its pid
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# ---------------------------------------------------------------------------------------------------------------
# A scriptable, faulty OpenAI-compatible server
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Behaviour:
    """What the server does with one request. Build with :func:`ok`, :func:`status`, :func:`drop`, ...

    ``kind`` is one of ``ok``, ``status``, ``drop``, ``malformed``; ``delay`` seconds are slept first.
    """

    kind: str
    text: str | None = None
    finish_reason: str = "stop"
    code: int = 200
    retry_after: str | None = None
    body: str = ""
    usage: dict[str, int] | None = None
    delay: float = 0.0


def ok(
    text: str | None = None, finish_reason: str = "stop", *, prompt_tokens: int = 7, completion_tokens: int = 3
) -> Behaviour:
    """A 200 chat completion. ``text=None`` echoes the last message's content (so tests can match results to
    requests)."""
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
    return Behaviour("ok", text=text, finish_reason=finish_reason, usage=usage)


def status(code: int, retry_after: float | str | None = None, body: str = '{"error": "scripted"}') -> Behaviour:
    """An error status with a body, and a ``Retry-After`` header (seconds or HTTP-date) if given."""
    return Behaviour("status", code=code, retry_after=None if retry_after is None else str(retry_after), body=body)


def drop() -> Behaviour:
    """Read the request, then close the connection without any response."""
    return Behaviour("drop")


def malformed(body: str = '{"choices": [') -> Behaviour:
    """A 200 whose body is not a chat completion (invalid JSON by default)."""
    return Behaviour("malformed", code=200, body=body)


def empty(finish_reason: str = "stop") -> Behaviour:
    """A 200 chat completion with empty content."""
    return ok("", finish_reason, completion_tokens=0)


def delay(seconds: float, then: Behaviour | None = None) -> Behaviour:
    """Sleep ``seconds``, then behave as ``then`` (default: an echoing :func:`ok`)."""
    then = ok() if then is None else then
    return Behaviour(**{**then.__dict__, "delay": then.delay + seconds})


@dataclass
class RecordedRequest:
    """A request as the server received it: path, headers (lower-cased names), parsed JSON body, arrival time."""

    path: str
    headers: dict[str, str]
    body: Any
    received_at: float = field(default_factory=time.monotonic)


class FaultyOpenAIServer:
    """A real HTTP server on 127.0.0.1 implementing ``POST /v1/chat/completions`` from a script.

    Each request takes the next behaviour from the queue filled by :meth:`script`; when the queue is empty it
    plays ``default`` (an echoing :func:`ok`). Everything received is in :attr:`requests`; :attr:`max_in_flight` is
    the most requests it was handling at once. Also answers ``GET /health`` and ``GET /v1/models``.

    Example:
        >>> with FaultyOpenAIServer() as server:  # doctest: +SKIP
        ...     server.script(drop(), ok("fine"))
        ...     ...  # the client's first attempt sees a dropped connection, its retry gets "fine"
        ...     server.requests[1].headers.get("authorization")
    """

    def __init__(self, default: Behaviour | None = None, *, model: str = "faulty-model"):
        self.default = ok() if default is None else default
        self.model = model
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._script: collections.deque[Behaviour] = collections.deque()
        self._lock = threading.Lock()
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> FaultyOpenAIServer:
        handler = type("Handler", (_Handler,), {"server_state": self})
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler, bind_and_activate=False)
        httpd.daemon_threads = True
        httpd.request_queue_size = 256  # many clients connect at once; the default backlog (5) drops SYNs
        httpd.server_bind()
        httpd.server_activate()
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=10)
            self._httpd = None

    def __enter__(self) -> FaultyOpenAIServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FaultyOpenAIServer is not running: call start() or use it as a context manager.")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``: the base URL to give the client."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- scripting ---------------------------------------------------------------------------------------------
    def script(self, *behaviours: Behaviour) -> FaultyOpenAIServer:
        """Queue behaviours for the next requests, in arrival order."""
        with self._lock:
            self._script.extend(behaviours)
        return self

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """The recorded ``POST /v1/chat/completions`` requests."""
        return [r for r in self.requests if r.path.rstrip("/").endswith("/chat/completions")]

    def _next(self, record: RecordedRequest) -> Behaviour:
        with self._lock:
            self.requests.append(record)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return self._script.popleft() if self._script else self.default

    def _done(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def completion(self, behaviour: Behaviour, body: Any) -> dict[str, Any]:
        """The JSON body of an ``ok`` behaviour."""
        text = behaviour.text
        if text is None:
            messages = body.get("messages") if isinstance(body, dict) else None
            text = str(messages[-1].get("content", "")) if messages else ""
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.model) if isinstance(body, dict) else self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": behaviour.finish_reason,
                }
            ],
            "usage": {**behaviour.usage, "total_tokens": sum(behaviour.usage.values())},
        }


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like real servers
    server_state: FaultyOpenAIServer

    def log_message(self, format: str, *args: Any) -> None:  # silence the per-request stderr log
        pass

    def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        state = self.server_state
        if self.path.rstrip("/") == "/health":
            self._send(200, b'{"status": "ok"}')
        elif self.path.rstrip("/") == "/v1/models":
            self._send(200, json.dumps({"object": "list", "data": [{"id": state.model, "object": "model"}]}).encode())
        else:
            self._send(404, b'{"error": "not found"}')

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        state = self.server_state
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        record = RecordedRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        if not self.path.rstrip("/").endswith("/chat/completions"):
            with state._lock:
                state.requests.append(record)
            self._send(404, b'{"error": "not found"}')
            return
        behaviour = state._next(record)
        try:
            if behaviour.delay:
                time.sleep(behaviour.delay)
            if behaviour.kind == "drop":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
            elif behaviour.kind == "status":
                headers = {} if behaviour.retry_after is None else {"Retry-After": behaviour.retry_after}
                self._send(behaviour.code, behaviour.body.encode(), headers)
            elif behaviour.kind == "malformed":
                self._send(behaviour.code, behaviour.body.encode())
            else:
                self._send(200, json.dumps(state.completion(behaviour, body)).encode())
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. its timeout): nothing to answer
        finally:
            state._done()
