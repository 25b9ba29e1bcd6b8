"""OpenAITeacher throughput: (a) client overhead against a zero-latency endpoint, (b) a real `transformers serve`.

(a) A minimal OpenAI-compatible endpoint (raw asyncio, fixed JSON answer, keep-alive) runs in a separate process, so
the numbers measure the client: ``--requests`` requests with ``--concurrency`` in flight, requests/s as the median
of ``--repeats`` runs, plus the client's CPU time per request. Target: >= 500 requests/s.

(b) ``transformers serve`` on CPU with SmolLM2-135M-Instruct, without and with ``--continuous-batching``:
``--serve-requests`` greedy requests of ``--serve-max-tokens`` tokens at concurrency 1 and ``--serve-concurrency``;
wall time and completion tokens/s (medians of ``--serve-repeats`` runs). The ratio shows whether concurrent
requests keep the server busier.

    python benchmarks/bench_teacher_http.py [--requests 3000] [--concurrency 64] [--repeats 3]
        [--serve-requests 16] [--serve-max-tokens 32] [--serve-concurrency 8] [--serve-repeats 3]
        [--serve-modes both|cb|no-cb] [--skip-client] [--skip-serve]

Prints Markdown tables and writes benchmarks/results/teacher_http.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RESULTS = Path(__file__).resolve().parent / "results"
TESTS = Path(__file__).resolve().parents[1] / "tests"

_BODY = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": "bench",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "42"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13},
    }
).encode()
_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(_BODY), _BODY)


class _FixedAnswer(asyncio.Protocol):
    """HTTP/1.1 keep-alive: answer every complete request (headers + Content-Length body) with ``_RESPONSE``."""

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = bytes(self.buffer[:end]).lower()
            start = head.find(b"content-length:")
            length = int(head[start + 15 :].split(b"\r\n", 1)[0]) if start >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[: end + 4 + length]
            self.transport.write(_RESPONSE)


def serve_fixed(port: int) -> None:
    """Run the zero-latency endpoint on 127.0.0.1:port until killed."""

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_FixedAnswer, "127.0.0.1", port, backlog=1024)
        await server.serve_forever()

    asyncio.run(main())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the benchmark endpoint did not listen on port {port} within {timeout} s")


def _requests(n: int, max_tokens: int, prefix: str = "Question"):
    from embedsdg_hf.generation.teachers import SamplingParams, TeacherRequest

    sampling = SamplingParams(temperature=0, top_p=1.0, max_tokens=max_tokens)
    return [TeacherRequest(({"role": "user", "content": f"{prefix} {i}"},), sampling, seed=i) for i in range(n)]


def _timed_generate(teacher, requests) -> tuple[float, float, list]:
    """(wall seconds, client CPU seconds, responses)."""
    responses = []
    wall, cpu = time.perf_counter(), time.process_time()
    teacher.generate(requests, lambda i, r: responses.append(r), progress=False)
    return time.perf_counter() - wall, time.process_time() - cpu, responses


def bench_client(n_requests: int, concurrency: int, repeats: int) -> dict:
    """Requests/s of OpenAITeacher against the zero-latency endpoint in another process."""
    from embedsdg_hf.generation.teachers import OpenAITeacher

    port = _free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve-fixed", str(port)])
    try:
        _wait_for_port(port)
        teacher = OpenAITeacher("bench", f"http://127.0.0.1:{port}/v1", max_concurrency=concurrency)
        _timed_generate(teacher, _requests(min(200, n_requests), 16))  # warm-up: imports, connections
        runs = []
        for _ in range(repeats):
            wall, cpu, responses = _timed_generate(teacher, _requests(n_requests, 16))
            if not all(r.ok for r in responses) or len(responses) != n_requests:
                raise RuntimeError(f"benchmark requests failed: {[r.error for r in responses if not r.ok][:3]}")
            runs.append(
                {"wall_s": wall, "req_per_s": n_requests / wall, "client_cpu_us_per_req": 1e6 * cpu / n_requests}
            )
    finally:
        server.kill()
        server.wait()
    return {
        "requests": n_requests,
        "concurrency": concurrency,
        "runs": runs,
        "median_req_per_s": statistics.median(r["req_per_s"] for r in runs),
        "median_client_cpu_us_per_req": statistics.median(r["client_cpu_us_per_req"] for r in runs),
    }


def bench_serve(
    model: str, n_requests: int, max_tokens: int, concurrencies: list[int], continuous_batching: bool, repeats: int
) -> list[dict]:
    """Wall time and completion tokens/s of `transformers serve` at several client concurrencies (medians of
    ``repeats`` runs, the concurrency levels interleaved so a burst of load elsewhere hits them alike)."""
    sys.path.insert(0, str(TESTS))
    from _servers import start_transformers_serve, stop_transformers_serve

    from embedsdg_hf.common.models import resolve_model
    from embedsdg_hf.generation.teachers import OpenAITeacher

    extra = ("--continuous-batching",) if continuous_batching else ("--no-continuous-batching",)
    started = time.perf_counter()
    proc = start_transformers_serve(resolve_model(model), extra_args=extra, timeout=180)
    startup = time.perf_counter() - started
    runs: dict[int, list[dict]] = {c: [] for c in concurrencies}
    try:
        warm = OpenAITeacher(proc.model, proc.base_url, max_concurrency=2, timeout=600.0)
        _timed_generate(warm, _requests(2, max_tokens, prefix="Warm-up"))  # lazy init (CB manager, kernels)
        for _ in range(repeats):
            for concurrency in concurrencies:
                teacher = OpenAITeacher(proc.model, proc.base_url, max_concurrency=concurrency, timeout=600.0)
                wall, _, responses = _timed_generate(teacher, _requests(n_requests, max_tokens))
                failed = [r.error for r in responses if not r.ok]
                if failed:
                    print(f"warning: {len(failed)} requests failed, e.g. {failed[0]}", file=sys.stderr)
                tokens = sum(r.completion_tokens for r in responses)
                runs[concurrency].append(
                    {
                        "wall_s": wall,
                        "completion_tokens": tokens,
                        "tokens_per_s": tokens / wall,
                        "failed": len(failed),
                        "load_average_1min": os.getloadavg()[0],  # other work on the machine skews CPU timings
                    }
                )
    finally:
        stop_transformers_serve(proc)
    rows = [
        {
            "continuous_batching": continuous_batching,
            "concurrency": concurrency,
            "requests": n_requests,
            "max_tokens": max_tokens,
            "server_startup_s": startup,
            "wall_s": statistics.median(r["wall_s"] for r in runs[concurrency]),
            "completion_tokens": statistics.median(r["completion_tokens"] for r in runs[concurrency]),
            "tokens_per_s": statistics.median(r["tokens_per_s"] for r in runs[concurrency]),
            "runs": runs[concurrency],
        }
        for concurrency in concurrencies
    ]
    for row in rows:
        row["speedup_vs_concurrency_1"] = row["tokens_per_s"] / rows[0]["tokens_per_s"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000, help="requests per client-overhead run")
    parser.add_argument("--concurrency", type=int, default=64, help="in flight in the client-overhead runs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="model spec for transformers serve")
    parser.add_argument("--serve-requests", type=int, default=16)
    parser.add_argument("--serve-max-tokens", type=int, default=32)
    parser.add_argument("--serve-concurrency", type=int, default=8, help="compared with concurrency 1")
    parser.add_argument("--serve-repeats", type=int, default=3, help="runs per concurrency level (median)")
    parser.add_argument("--serve-modes", choices=["both", "cb", "no-cb"], default="both")
    parser.add_argument("--skip-client", action="store_true")
    parser.add_argument("--skip-serve", action="store_true")
    parser.add_argument("--serve-fixed", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--output", default=str(RESULTS / "teacher_http.json"))
    args = parser.parse_args()
    if args.serve_fixed is not None:
        serve_fixed(args.serve_fixed)
        return

    from embedsdg_hf.generation.teachers import openai_teacher

    result: dict = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "http_client": f"{openai_teacher.httpx.__name__} {openai_teacher.httpx.__version__}",
            "load_average_at_start": os.getloadavg(),
        }
    }
    if not args.skip_client:
        client = bench_client(args.requests, args.concurrency, args.repeats)
        result["client_overhead"] = client
        print("\n### OpenAITeacher client overhead (zero-latency endpoint in another process)\n")
        print("| requests | in flight | run | wall s | req/s | client CPU µs/req |")
        print("|---:|---:|---:|---:|---:|---:|")
        for i, run in enumerate(client["runs"], 1):
            print(
                f"| {client['requests']} | {client['concurrency']} | {i} | {run['wall_s']:.2f} | "
                f"{run['req_per_s']:.0f} | {run['client_cpu_us_per_req']:.0f} |"
            )
        print(f"\nMedian: **{client['median_req_per_s']:.0f} req/s** (target >= 500).")
    if not args.skip_serve:
        modes = {"both": [False, True], "cb": [True], "no-cb": [False]}[args.serve_modes]
        rows = []
        for continuous_batching in modes:
            rows += bench_serve(
                args.model,
                args.serve_requests,
                args.serve_max_tokens,
                [1, args.serve_concurrency],
                continuous_batching,
                args.serve_repeats,
            )
        result["transformers_serve"] = rows
        print(
            f"\n### transformers serve ({args.model}, CPU), {args.serve_requests} requests x <= "
            f"{args.serve_max_tokens} tokens, greedy, median of {args.serve_repeats}\n"
        )
        print("| continuous batching | concurrency | wall s | completion tokens | tokens/s | vs concurrency 1 |")
        print("|---|---:|---:|---:|---:|---:|")
        for row in rows:
            print(
                f"| {'on' if row['continuous_batching'] else 'off'} | {row['concurrency']} | {row['wall_s']:.1f} | "
                f"{row['completion_tokens']} | {row['tokens_per_s']:.1f} | {row['speedup_vs_concurrency_1']:.2f}x |"
            )
    result["machine"]["load_average_at_end"] = os.getloadavg()
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nWrote {args.output}")


if __name__ == "__main__":
    main()
