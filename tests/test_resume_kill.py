"""Resume after a real ``kill -9``: no finished request is lost or sent twice, no row is lost or duplicated.

A subprocess runs ``make_synthetic_dataset`` (RandomSDG, 40 requests) with a slow fake teacher that logs every
request it sends. The test kills it with SIGKILL once the request cache holds at least 10 results, runs the same
script again to completion, and checks the result against the cache and the send logs of both runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

GSM8K_TRAIN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gsm8k" / "train.jsonl"
N_SAMPLES = 40
KILL_AFTER = 10

SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path

    import datasets

    from embedsdg_hf.generation.generate import make_synthetic_dataset
    from embedsdg_hf.generation.teachers.base import TeacherResponse

    gsm8k, cache_dir, send_log, run, out = sys.argv[1:]
    if Path(gsm8k).exists():  # real GSM8K rows when ../shared has them, else the built-in generator
        with open(gsm8k) as handle:
            pool = datasets.Dataset.from_list([json.loads(line) for _, line in zip(range(48), handle)])
    else:
        from embedsdg_hf.data.word_problems import make_word_problems

        pool = make_word_problems(48, seed=0)


    class SlowTeacher:
        def identity(self):
            return {"backend": "slow-fake", "model": "fake-1"}

        def generate(self, requests, on_result, *, progress=True):
            for index, request in enumerate(requests):
                with open(send_log, "a") as log:
                    log.write(f"{run}\\t{request.seed}\\n")
                time.sleep(0.1)
                value = request.seed % 97
                text = f"New question {request.seed}?\\n### Answer\\nSo {value}.\\n#### {value}"
                on_result(index, TeacherResponse(text, "stop", 50, 10, "fake-1", prefill_applied=True))


    ds = make_synthetic_dataset(
        pool, teacher=SlowTeacher(), method="random", n_samples=__N_SAMPLES__, seed=7, cache_dir=cache_dir
    )
    ds.to_json(out)
    """
).replace("__N_SAMPLES__", str(N_SAMPLES))


def _cached_keys(path: Path) -> list[str]:
    """Keys of the complete records in the cache file (a torn last line is skipped, as the cache does)."""
    keys = []
    for line in path.read_text().splitlines():
        try:
            keys.append(json.loads(line)["key"])
        except ValueError:
            pass
    return keys


def _sent(send_log: Path, run: str) -> list[int]:
    return [
        int(seed) for name, seed in (line.split("\t") for line in send_log.read_text().splitlines()) if name == run
    ]


def test_sigkill_then_resume(tmp_path):
    script = tmp_path / "generate_run.py"
    script.write_text(SCRIPT)
    cache_dir, send_log, out = tmp_path / "cache", tmp_path / "sent.log", tmp_path / "out.jsonl"
    cache_file = cache_dir / "requests.jsonl"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "hf-cache")}

    def command(run: str) -> list[str]:
        return [sys.executable, str(script), str(GSM8K_TRAIN), str(cache_dir), str(send_log), run, str(out)]

    first = subprocess.Popen(command("first"), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while not (cache_file.exists() and len(_cached_keys(cache_file)) >= KILL_AFTER):
        assert first.poll() is None, f"the first run ended early:\n{first.stdout.read().decode()}"
        assert time.monotonic() < deadline, "the first run did not cache 10 results in time"
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    first.stdout.close()
    assert first.returncode == -signal.SIGKILL and not out.exists()
    cached_before = set(_cached_keys(cache_file))
    assert KILL_AFTER <= len(cached_before) < N_SAMPLES

    second = subprocess.run(command("second"), env=env, capture_output=True, text=True, timeout=180)
    assert second.returncode == 0, second.stdout + second.stderr

    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == N_SAMPLES
    items = [(row["seed_a"], row["sample_index"]) for row in rows]
    assert len(set(items)) == N_SAMPLES, "a (item, sample_index) appears twice"
    keys = [row["request_key"] for row in rows]
    cached_after = _cached_keys(cache_file)
    assert sorted(cached_after) == sorted(keys), "every cached key appears exactly once in the data, and vice versa"
    assert all(row["reject_reason"] is None for row in rows)
    assert sum(row["from_cache"] for row in rows) == len(cached_before)

    seed_of = {row["request_key"]: row["seed"] for row in rows}
    done_before = {seed_of[key] for key in cached_before}
    sent_first, sent_second = _sent(send_log, "first"), _sent(send_log, "second")
    assert done_before <= set(sent_first)
    assert not done_before & set(sent_second), "a request finished before the kill was sent again"
    assert len(sent_second) == len(set(sent_second)) == N_SAMPLES - len(cached_before)
    assert set(sent_first) | set(sent_second) == set(seed_of.values())
