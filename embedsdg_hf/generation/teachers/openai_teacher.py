"""A teacher behind any OpenAI-compatible ``/chat/completions`` endpoint (vLLM, SGLang, TGI, ``transformers serve``,
OpenAI itself), with bounded concurrency, several base URLs and retries.

Why a client of its own next to the ``openai`` SDK (installed, and enough for one request at a time): the SDK gives
retries with ``Retry-After`` and timeouts per client, but not what a generation run needs around them: one bounded
pool of in-flight requests spread over several base URLs (a request that fails on one server is retried on
another), each result handed to the caller's thread the moment it lands (so the request cache records it durably
before the next one), Ctrl-C cancelling what is in flight while every finished result stands, and retry logging
rate-limited across thousands of requests. Those behaviours are tested against real servers on 127.0.0.1
(``tests/test_teacher_real_server.py``, ``tests/test_faults.py``) and the client sustains 1,578 req/s
(``benchmarks/bench_teacher_http.py``); replacing it with the SDK would mean rebuilding them on top of it.

Example:
    >>> from embedsdg_hf.generation.teachers import OpenAITeacher, TeacherRequest
    >>> teacher = OpenAITeacher("meta-llama/Llama-3.1-70B-Instruct", ["http://gpu1:8000/v1", "http://gpu2:8000/v1"])
    >>> requests = [TeacherRequest(messages=({"role": "user", "content": "Write a word problem."},), seed=0)]
    >>> teacher.generate(requests, lambda i, r: print(i, r.text))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import math
import os
import queue
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

try:
    import httpx
except ImportError:  # `httpx2` is the same client under a new distribution/module name
    import httpx2 as httpx

from ...common.redact import redact, redact_text
from .base import TeacherError, TeacherRequest, TeacherResponse

logger = logging.getLogger(__name__)

#: Statuses worth retrying: rate limits, overload and gateway hiccups (408: the server timed the request out).
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
#: Body keys the teacher sets itself; ``extra_body`` may not override them.
RESERVED_KEYS = frozenset({"model", "messages", "temperature", "top_p", "max_tokens", "seed"})
#: Connections per HTTP client; more concurrency uses several clients (see ``OpenAITeacher._run``).
POOL_SIZE = 16
#: At most one retry line is logged per this many seconds (the lines in between are counted in the next one).
RETRY_LOG_INTERVAL = 5.0

OnResult = Callable[[int, TeacherResponse], None]


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP-date); None if absent or unparsable.

    Example:
        >>> parse_retry_after("2")
        2.0
        >>> parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0)
        10.0
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass  # not a number: try the HTTP-date form below
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        logger.debug("Ignoring unparsable Retry-After header %r", value)
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass
class _Endpoint:
    """One base URL and its load in the current :meth:`OpenAITeacher.generate` call."""

    base_url: str
    chat_url: str
    label: str = ""  # the base URL without user-info: what messages and logs show
    in_flight: int = 0
    last_pick: int = -1
    connect_failures: int = 0  # consecutive; a server that answers anything resets it
    down_until: float = 0.0  # after a failed connect, other endpoints are preferred until then (monotonic time)


@dataclass
class _Retry:
    """A failed attempt worth retrying."""

    message: str
    retry_after: float | None = None
    connect_failure: bool = False


class _Run:
    """State of one ``generate`` call: the HTTP clients, the endpoints' load, and the dispatch loop."""

    def __init__(self, teacher: OpenAITeacher, clients: list[httpx.AsyncClient]):
        self.teacher = teacher
        self.clients = clients
        self.client_load = [0] * len(clients)
        self.endpoints = [_Endpoint(url, url + "/chat/completions", redact_text(url)) for url in teacher.base_urls]
        self._picks = 0

    def pick(self, avoid: _Endpoint | None = None) -> _Endpoint:
        """Least in-flight endpoint, preferring ones not recently refusing connections and (for a retry) not the one
        that just failed; ties go round-robin."""
        now = time.monotonic()
        endpoint = min(
            self.endpoints,
            key=lambda e: (e.down_until > now, e is avoid, e.in_flight, e.last_pick),
        )
        endpoint.last_pick = self._picks
        self._picks += 1
        return endpoint

    async def dispatch(self, requests: Sequence[TeacherRequest], on_result: OnResult) -> None:
        """Run every request with at most ``max_concurrency`` in flight; stop at the first fatal error."""
        semaphore = asyncio.Semaphore(self.teacher.max_concurrency)
        pending: set[asyncio.Task] = set()
        fatal: list[BaseException] = []

        def finished(task: asyncio.Task) -> None:
            pending.discard(task)
            semaphore.release()
            if not task.cancelled() and task.exception() is not None and not fatal:
                fatal.append(task.exception())

        async def one(index: int, request: TeacherRequest) -> None:
            on_result(index, self.teacher._account(await self.request(request)))

        try:
            for index, request in enumerate(requests):
                await semaphore.acquire()
                if fatal:
                    break
                task = asyncio.ensure_future(one(index, request))
                pending.add(task)
                task.add_done_callback(finished)
            while pending and not fatal:
                await asyncio.wait(set(pending), return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if fatal:
            raise fatal[0]

    async def request(self, request: TeacherRequest) -> TeacherResponse:
        """One request with retries; raises :class:`TeacherError` for a rejected key or a server never reached."""
        teacher = self.teacher
        payload, prefill_applied = teacher._payload(request)
        endpoint: _Endpoint | None = None
        failures: list[_Retry] = []
        tried: list[str] = []
        for attempt in range(1, teacher.max_retries + 2):
            endpoint = self.pick(avoid=endpoint)
            if endpoint.label not in tried:
                tried.append(endpoint.label)
            outcome = await self._attempt(endpoint, payload)
            if isinstance(outcome, TeacherResponse):
                outcome.attempts, outcome.prefill_applied = attempt, prefill_applied
                return outcome
            failures.append(outcome)
            if attempt > teacher.max_retries:
                break
            delay = teacher._delay(attempt, outcome.retry_after)
            teacher._usage["retries"] += 1
            teacher._log_retry(attempt, delay, outcome.message)
            await asyncio.sleep(delay)
        if all(failure.connect_failure for failure in failures):
            raise TeacherError(
                f"could not reach {', '.join(tried)} after {len(failures)} attempts: {failures[-1].message}"
            )
        return TeacherResponse(text=None, model=teacher.model, error=failures[-1].message, attempts=len(failures))

    async def _attempt(self, endpoint: _Endpoint, payload: bytes) -> TeacherResponse | _Retry:
        # The least-loaded client always has a free connection: fewer than max_concurrency requests are in flight.
        shard = min(range(len(self.clients)), key=self.client_load.__getitem__)
        self.client_load[shard] += 1
        endpoint.in_flight += 1
        try:  # the deadline bounds the whole exchange: a body trickled a byte at a time cannot outlast it
            response = await asyncio.wait_for(
                self.clients[shard].post(endpoint.chat_url, content=payload), timeout=self.teacher.timeout
            )
        except asyncio.TimeoutError:
            return _Retry(f"timed out (no complete answer within {self.teacher.timeout:g} s) ({endpoint.label})")
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            endpoint.connect_failures += 1
            cool_down = min(max(self.teacher.backoff_base, 0.1) * 2 ** (endpoint.connect_failures - 1), 30.0)
            endpoint.down_until = time.monotonic() + cool_down
            return _Retry(f"{redact_text(_describe(exc))} ({endpoint.label})", connect_failure=True)
        except httpx.TransportError as exc:  # timeouts, dropped connections, protocol errors
            return _Retry(f"{redact_text(_describe(exc))} ({endpoint.label})")
        finally:
            endpoint.in_flight -= 1
            self.client_load[shard] -= 1
        endpoint.connect_failures, endpoint.down_until = 0, 0.0
        return self.teacher._interpret(endpoint, response)


def _describe(exc: BaseException) -> str:
    """A short reason for a transport failure, e.g. ``connection refused`` or ``timed out (ReadTimeout)``."""
    chain, cause = [], exc
    while cause is not None and len(chain) < 8:
        chain.append(cause)
        chain.extend(getattr(cause, "exceptions", ()))  # anyio raises an ExceptionGroup for several addresses
        cause = cause.__cause__
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "connection refused"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    kind = {httpx.ConnectError: "connection failed", httpx.RemoteProtocolError: "connection dropped"}.get(
        type(exc), type(exc).__name__
    )
    detail = str(chain[-1]).strip()
    return f"{kind}: {detail}" if detail else kind


class OpenAITeacher:
    """A teacher served over HTTP by any OpenAI-compatible server, at one or several base URLs.

    Args:
        model: the model name the server expects in requests.
        base_urls: one base URL or several (``http://host:port/v1``); the load is spread over them (least in-flight,
            round-robin on ties) and a retry may go to another one.
        api_key_env: environment variable holding the API key (sent as ``Authorization: Bearer``); unset is fine
            for local servers. The key itself is never logged nor put in error messages.
        max_concurrency: requests in flight at once (also the connection-pool size).
        timeout: seconds per HTTP attempt.
        max_retries: retries after the first attempt for 408/429/5xx-gateway statuses, timeouts, dropped or refused
            connections and malformed bodies; waits grow exponentially (``backoff_base * 2**n``, jittered) up to
            ``backoff_max``, or follow the server's ``Retry-After`` (capped by ``backoff_max``).
        extra_body: extra JSON keys sent with every request (e.g. ``{"top_k": 20}``, or vLLM's
            ``{"guided_json": schema}``); part of :meth:`identity`.
        response_format: the OpenAI ``response_format`` sent with every request (structured output; vLLM turns a
            JSON schema into guided decoding), e.g.
            :func:`~embedsdg_hf.generation.parse.json_response_format` for the JSON form of an example, which
            :func:`~embedsdg_hf.generation.parse.parse_generation` reads. Part of :meth:`identity`.
        assistant_prefill: send :attr:`TeacherRequest.prefill` as a final assistant message to continue
            (``continue_final_message``, a vLLM extension); off by default as other servers reject it.

    Example:
        >>> teacher = OpenAITeacher("Qwen/Qwen2.5-7B-Instruct", "http://127.0.0.1:8000/v1", max_concurrency=32)
        >>> teacher.identity()
        {'backend': 'openai', 'model': 'Qwen/Qwen2.5-7B-Instruct'}
    """

    def __init__(
        self,
        model: str,
        base_urls: str | Sequence[str],
        *,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 64,
        timeout: float = 120.0,
        max_retries: int = 6,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        extra_body: Mapping[str, Any] | None = None,
        response_format: Mapping[str, Any] | None = None,
        assistant_prefill: bool = False,
    ):
        if not isinstance(model, str) or not model.strip():
            raise ValueError(f"model must be a non-empty string, got {model!r}.")
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not urls:
            raise ValueError("base_urls is empty: give at least one base URL such as 'http://127.0.0.1:8000/v1'.")
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"Base URL {url!r} is not an http(s) URL like 'http://127.0.0.1:8000/v1'.")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}.")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}.")
        if timeout <= 0 or backoff_base < 0 or backoff_max < 0:
            raise ValueError(
                f"timeout must be > 0 and back-off times >= 0, got timeout={timeout}, "
                f"backoff_base={backoff_base}, backoff_max={backoff_max}."
            )
        extra_body = dict(extra_body or {})
        clashes = sorted(RESERVED_KEYS & extra_body.keys())
        if clashes:
            raise ValueError(f"extra_body may not set {clashes}: they come from TeacherRequest / the model argument.")
        if response_format is not None:
            response_format = dict(response_format)
            if not isinstance(response_format.get("type"), str):
                raise ValueError(
                    f"response_format must be an OpenAI response_format object with a 'type' ('json_schema', "
                    f"'json_object' or 'text'), got {response_format!r}."
                )
            if "response_format" in extra_body:
                raise ValueError("response_format is given twice: as an argument and in extra_body; keep one.")
            if assistant_prefill:
                raise ValueError(
                    "assistant_prefill cannot be used with response_format: a prefilled '### Question' would start "
                    "the structured (JSON) answer."
                )
            extra_body["response_format"] = response_format
        self.model = model
        self.base_urls = [url.rstrip("/") for url in urls]
        self.api_key_env = api_key_env
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.extra_body = extra_body
        self.assistant_prefill = assistant_prefill
        self._usage = dict.fromkeys(("requests", "prompt_tokens", "completion_tokens", "retries", "failures"), 0)
        self._api_key: str | None = None
        self._retry_log = {"at": -math.inf, "quiet": 0}

    def __repr__(self) -> str:
        return f"OpenAITeacher(model={self.model!r}, base_urls={[redact_text(url) for url in self.base_urls]!r})"

    @property
    def usage(self) -> dict[str, int]:
        """Running totals over this teacher's life: requests reported, tokens, retries, failed requests."""
        return dict(self._usage)

    def identity(self) -> dict[str, Any]:
        """Backend, model and ``extra_body``: what defines the outputs (no URLs, no key)."""
        return {"backend": "openai", "model": self.model, **redact(self.extra_body)}

    def generate(
        self,
        requests: Sequence[TeacherRequest],
        on_result: OnResult,
        *,
        progress: bool = True,
    ) -> None:
        """Send every request; call ``on_result(index, response)`` in this thread as each one completes.

        Raises:
            TeacherError: the server rejected the API key (401/403), or a request never reached any server.
                Results reported before that stand.
        """
        from datasets.utils.tqdm import tqdm  # silenced by datasets.disable_progress_bars()
        from tqdm.contrib.logging import logging_redirect_tqdm

        requests = list(requests)
        if not requests:
            return
        self._api_key = os.environ.get(self.api_key_env) or None
        before = self.usage
        # Log lines (a retry's warning) go above the bar instead of onto its line while it is drawn.
        redirect = logging_redirect_tqdm() if progress else contextlib.nullcontext()
        with redirect, tqdm(total=len(requests), desc="Teacher requests", unit="req", disable=not progress) as bar:

            def report(index: int, response: TeacherResponse) -> None:
                on_result(index, response)
                bar.update(1)

            try:
                asyncio.get_running_loop()
            except RuntimeError:
                asyncio.run(self._run(requests, report))
            else:  # called from async code (e.g. a notebook): run our loop in a worker thread
                self._run_in_thread(requests, report)
        after = self.usage
        if after["retries"] > before["retries"] or after["failures"] > before["failures"]:
            logger.info(
                "%s: %d requests, %d retries, %d failed",
                self,
                after["requests"] - before["requests"],
                after["retries"] - before["retries"],
                after["failures"] - before["failures"],
            )

    async def _run(self, requests: Sequence[TeacherRequest], on_result: OnResult) -> None:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        # httpcore scans its whole pool (a poll() per connection) for every request, so a 64-connection pool costs
        # twice the CPU per request of a 16-connection one: keep-alive pools of <= POOL_SIZE, used least-loaded.
        n_clients = math.ceil(self.max_concurrency / POOL_SIZE)
        size = math.ceil(self.max_concurrency / n_clients)
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        async with contextlib.AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(
                    httpx.AsyncClient(headers=headers, limits=limits, timeout=httpx.Timeout(self.timeout))
                )
                for _ in range(n_clients)
            ]
            await _Run(self, clients).dispatch(requests, on_result)

    def _run_in_thread(self, requests: Sequence[TeacherRequest], on_result: OnResult) -> None:
        """Run the event loop in a worker thread, relaying results to this thread through a queue."""
        results: queue.SimpleQueue = queue.SimpleQueue()
        done = object()
        started = threading.Event()
        state: dict[str, Any] = {}

        def worker() -> None:
            loop = asyncio.new_event_loop()
            try:
                state["loop"] = loop
                state["task"] = loop.create_task(self._run(requests, lambda i, r: results.put((i, r))))
                started.set()
                loop.run_until_complete(state["task"])
            except BaseException as exc:  # re-raised in the caller's thread below
                state["error"] = exc
            finally:
                started.set()
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()
                results.put(done)

        thread = threading.Thread(target=worker, name="OpenAITeacher", daemon=True)
        thread.start()
        try:
            while (item := results.get()) is not done:
                on_result(*item)
        except BaseException:
            started.wait()
            if "task" in state and not state["loop"].is_closed():
                state["loop"].call_soon_threadsafe(state["task"].cancel)
            raise
        finally:
            thread.join()
        if "error" in state:
            raise state["error"]

    def _payload(self, request: TeacherRequest) -> tuple[bytes, bool]:
        """The JSON body of a request, and whether it carries the prefill."""
        messages = [dict(message) for message in request.messages]
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": request.sampling.temperature,
            "top_p": request.sampling.top_p,
            "max_tokens": request.sampling.max_tokens,
        }
        if request.seed is not None:
            body["seed"] = request.seed
        body.update(self.extra_body)
        prefill_applied = bool(self.assistant_prefill and request.prefill)
        if prefill_applied:
            messages.append({"role": "assistant", "content": request.prefill})
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
        return json.dumps(body, ensure_ascii=False).encode(), prefill_applied

    def _interpret(self, endpoint: _Endpoint, response: httpx.Response) -> TeacherResponse | _Retry:
        """Turn an HTTP response into a result, a retry, or a :class:`TeacherError`."""
        status = response.status_code
        if status in (401, 403):
            sent = f"the key in ${self.api_key_env}" if self._api_key else f"no key (${self.api_key_env} is unset)"
            raise TeacherError(
                f"{endpoint.label} rejected the API key (HTTP {status}); sent {sent}: "
                f"{self._redact(_short(response.text))}"
            )
        if status in RETRYABLE_STATUS:
            return _Retry(
                f"HTTP {status} from {endpoint.label}: {self._redact(_short(response.text))}",
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        if not 200 <= status < 300:
            return TeacherResponse(
                text=None,
                model=self.model,
                error=f"HTTP {status} from {endpoint.label}: {self._redact(_short(response.text))}",
            )
        try:
            data = json.loads(response.content)
            choice = data["choices"][0]
            content = choice["message"].get("content")
            if content is not None and not isinstance(content, str):
                raise TypeError(f"message content is {type(content).__name__}, not a string")
            if content is None:  # no answer at all (not an empty one): a failed request, never cached
                return TeacherResponse(
                    text=None,
                    model=self.model,
                    finish_reason=choice.get("finish_reason"),
                    error=f"empty answer: message content is null (finish_reason {choice.get('finish_reason')!r}) "
                    f"from {endpoint.label}",
                )
            usage = data.get("usage") or {}
            return TeacherResponse(
                text=content or "",
                finish_reason=choice.get("finish_reason"),
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
                model=str(data.get("model") or self.model),
            )
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            detail = f"{type(exc).__name__}: {exc}" if not isinstance(exc, KeyError) else f"missing key {exc}"
            return _Retry(
                f"malformed response: {_short(detail, 120)} (from {endpoint.label}); "
                f"body: {self._redact(_short(response.text, 120))}"
            )

    def _log_retry(self, attempt: int, delay: float, message: str) -> None:
        """One warning line per retry, at most one per ``RETRY_LOG_INTERVAL`` s (the others are counted in it)."""
        state, now = self._retry_log, time.monotonic()
        if now - state["at"] < RETRY_LOG_INTERVAL:
            state["quiet"] += 1
            return
        quiet = f" (+{state['quiet']} more retries since the last line)" if state["quiet"] else ""
        logger.warning(
            "Teacher retry %d of %d in %.1fs after: %s%s", attempt, self.max_retries, delay, _short(message), quiet
        )
        state["at"], state["quiet"] = now, 0

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number ``attempt``."""
        if retry_after is not None:
            return min(retry_after, self.backoff_max)
        return min(self.backoff_base * 2 ** (attempt - 1), self.backoff_max) * random.uniform(0.5, 1.0)

    def _account(self, response: TeacherResponse) -> TeacherResponse:
        usage = self._usage
        usage["requests"] += 1
        usage["prompt_tokens"] += response.prompt_tokens
        usage["completion_tokens"] += response.completion_tokens
        usage["failures"] += not response.ok
        return response

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text
