"""Fault cases of ``embedsdg run`` (and ``train``): each plants a real fault (a folder of the user's files, a corrupt
run_config.json, a bad pool file, a teacher server answering 500 / non-JSON / no ``choices`` / nothing, a second
run, a full disk, Ctrl-C, ``kill -9``) and checks the exit code, the one-line message and that nothing finished was
lost. Real parts throughout: the CLI's ``main`` (in-process, or a subprocess where a signal or a limit is the
fault), the built-in SmolLM2 student, real GSM8K rows, real HTTP servers on 127.0.0.1.
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

import pytest
from _runs import QUICK
from _runs import random_run_args as _random_run
from _servers import FaultyOpenAIServer, delay, malformed, ok, status

from embedsdg_hf.cli import main
from embedsdg_hf.common.rundir import MARKER_FILE, PID_FILE, write_json_atomic, write_marker
from embedsdg_hf.config import PipelineConfig, results_diff
from embedsdg_hf.pipeline import prepare_output_dir

REPO = Path(__file__).resolve().parents[1]
# A teacher answer every gate accepts (calculator annotation and final answer agree).
GOOD = (
    "### Question\nTom has 3 bags of 4 apples. How many apples?\n### Answer\nHe has 3*4=<<3*4=12>>12 apples.\n#### 12"
)
# Fast settings: no dedup/decontamination/coverage (they embed again), few pairs, short decoding.


@pytest.fixture(scope="module")
def good_teacher():
    """A real OpenAI-compatible server on 127.0.0.1 answering every request with :data:`GOOD`."""
    with FaultyOpenAIServer(default=ok(GOOD)) as server:
        yield server.base_url


def _embedsdg_run(pool: Path, out: Path, teacher_url: str, *extra: str) -> list[str]:
    """EmbedSDG on the tiny pool: 2 pairs, decoded one per batch (so decoding is saved after each pair)."""
    return [
        "run",
        "--seed_pool",
        str(pool),
        "--bins",
        "6",  # two sparse regions on this pool
        "--n_pairs",
        "2",
        "--max_pairs_per_region",
        "1",
        "--decode_examples",
        "0",
        "--decode_max_new_tokens",
        "8",
        "--decode_batch_size",
        "1",
        "--teacher",
        f"openai:m@{teacher_url}",
        "--output_dir",
        str(out),
        *QUICK,
        *extra,
    ]


def _cli(capsys, args: list[str]) -> tuple[int, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _subprocess(args: list[str], tmp_path: Path, **kwargs) -> subprocess.Popen:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(tmp_path / "hf-cache"),
        "PYTHONPATH": str(REPO),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "embedsdg_hf.cli", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _wait_for(condition, proc: subprocess.Popen | None = None, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended early (exit {proc.returncode}):\n{proc.stderr.read()[-3000:]}")
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


# ---------------------------------------------------------------------------------------------------------------
# Data loss: --overwrite, the request cache, the fingerprint
# ---------------------------------------------------------------------------------------------------------------


def test_overwrite_never_deletes_a_folder_that_is_not_a_run_dir(capsys, short_pool, good_teacher, tmp_path):
    mine = tmp_path / "my-files"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    code, text = _cli(capsys, _random_run(short_pool, mine, good_teacher, "--overwrite", "true"))
    assert code == 2 and "is not an embedsdg run dir" in text and "never deletes it" in text
    assert "Traceback" not in text
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"] and (mine / "thesis.tex").read_text() == "years of work"


def test_overwrite_keeps_the_request_cache_and_clear_cache_deletes_it(tmp_path):
    out = tmp_path / "run"
    prepare_output_dir(PipelineConfig(output_dir=str(out)))
    (out / "cache").mkdir()
    (out / "cache" / "requests.jsonl").write_text('{"key": "paid"}\n')
    (out / "pool").mkdir()
    (out / "manifest.json").write_text('{"status": "ok"}')  # a finished run: its results are not replaced silently
    with pytest.raises(FileExistsError, match=r"differs in: \['n_pairs'\].*teacher cache is kept"):
        prepare_output_dir(PipelineConfig(output_dir=str(out), n_pairs=5))
    prepare_output_dir(PipelineConfig(output_dir=str(out), n_pairs=5, overwrite=True))
    assert sorted(p.name for p in out.iterdir()) == [MARKER_FILE, "cache", "run_config.json"]
    assert (out / "cache" / "requests.jsonl").read_text() == '{"key": "paid"}\n'
    prepare_output_dir(PipelineConfig(output_dir=str(out), n_pairs=5, clear_cache=True))
    assert not (out / "cache").exists()


def test_fingerprint_holds_only_settings_that_change_results(tmp_path):
    base = PipelineConfig(teacher="openai:m@http://127.0.0.1:8000/v1").to_dict()
    same = PipelineConfig(
        teacher="openai:m@http://localhost:8000/v1",
        teacher_concurrency=3,
        teacher_timeout=5,
        teacher_max_retries=0,
        max_failed_fraction=0.9,
        decode_batch_size=4,
        decode_cache=str(tmp_path / "decode.jsonl"),
        output_dir=str(tmp_path),
        overwrite=True,
        clear_cache=True,
    ).to_dict()
    assert results_diff(base, same) == []
    assert results_diff(base, {**base, "teacher": "openai:other@http://127.0.0.1:8000/v1"}) == ["teacher"]
    # A key this code does not know (another version's new setting) changes results unless listed as operational;
    # a key missing from an older run_config.json counts as its default.
    assert results_diff(base, {**base, "some_new_key": 1}) == ["some_new_key"]
    assert results_diff({k: v for k, v in base.items() if k != "max_pairs_per_region"}, base) == []


def test_a_run_that_never_finished_takes_a_corrected_config_keeping_the_stages_it_does_not_touch(tmp_path):
    out = tmp_path / "run"
    prepare_output_dir(PipelineConfig(output_dir=str(out), bins=5))
    for name in ("pool", "reducer", "regions", "pairs", "decoded", "cache"):
        (out / name).mkdir()
    for name in ("grid.json", "synthetic.jsonl"):
        (out / name).write_text("{}")
    (out / "manifest.json").write_text('{"status": "failed"}')  # e.g. no sparse regions, or the teacher failed
    prepare_output_dir(PipelineConfig(output_dir=str(out), bins=8))  # the corrected command is not refused
    assert sorted(p.name for p in out.iterdir()) == [MARKER_FILE, "cache", "pool", "reducer", "run_config.json"]
    assert json.loads((out / "run_config.json").read_text())["bins"] == 8
    # A setting no stage list names (another version's new key) makes every stage stale: only the cache stays.
    previous = json.loads((out / "run_config.json").read_text())
    (out / "run_config.json").write_text(json.dumps({**previous, "some_future_key": 1}))
    prepare_output_dir(PipelineConfig(output_dir=str(out), bins=8))
    assert sorted(p.name for p in out.iterdir()) == [MARKER_FILE, "cache", "run_config.json"]


# ---------------------------------------------------------------------------------------------------------------
# Failure reported as success: bad teachers
# ---------------------------------------------------------------------------------------------------------------

BAD_TEACHERS = {
    "500 to everything": (status(500, body='{"error": "boom"}'), "HTTP 500", "HTTP 500"),
    "non-JSON": (malformed("<html>oops</html>"), "malformed response", "malformed response"),
    "JSON without choices": (malformed('{"id": "x", "object": "chat.completion"}'), "missing key 'choices'", ""),
    "hanging": (delay(30.0), "timed out", "timed out"),
}


@pytest.mark.parametrize("case", list(BAD_TEACHERS))
def test_a_bad_teacher_fails_the_run_with_the_first_error_and_counts(case, capsys, caplog, short_pool, tmp_path):
    behaviour, first_error, kind = BAD_TEACHERS[case]
    out = tmp_path / "run"
    with FaultyOpenAIServer(default=behaviour) as server:
        args = _random_run(short_pool, out, server.base_url, "--teacher_timeout", "1", "--teacher_max_retries", "1")
        started = time.monotonic()
        code, text = _cli(capsys, args)
    assert code == 1, text
    assert time.monotonic() - started < 60  # settable timeout and retries: never 14 minutes
    assert "4 of 4 teacher requests failed" in text and first_error in text and "Traceback" not in text
    assert f"{{'{kind or 'malformed response'}': 4}}" in text  # counts by error kind
    rows = [json.loads(line) for line in (out / "synthetic.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(first_error in row["error"] for row in rows)  # the finished work is on disk
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["generation"]["errors"]["failed"] == 4
    assert (out / "cache").is_dir()
    retries = [r for r in caplog.records if "Teacher retry" in r.getMessage()]
    assert 1 <= len(retries) <= 2  # one line per retry, rate-limited (4 retries within the interval)


def test_a_few_failures_under_max_failed_fraction_still_succeed(capsys, short_pool, tmp_path):
    out = tmp_path / "run"
    with FaultyOpenAIServer(default=ok(GOOD)) as server:
        server.script(status(400, body='{"error": "bad request"}'))  # not retried: one row fails
        code, text = _cli(capsys, _random_run(short_pool, out, server.base_url))
    assert code == 0, text
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "ok" and manifest["generation"]["errors"]["by_kind"] == {"HTTP 400": 1}
    assert len((out / "train.jsonl").read_text().splitlines()) == 3


def test_nothing_survives_to_train_jsonl_fails_and_train_says_the_data_is_empty(capsys, short_pool, tmp_path):
    out = tmp_path / "run"
    bad_sum = GOOD.replace("<<3*4=12>>12", "<<3*4=13>>13").replace("#### 12", "#### 13")
    with FaultyOpenAIServer(default=ok(bad_sum)) as server:
        code, text = _cli(capsys, _random_run(short_pool, out, server.base_url))
    assert code == 1 and "No row survived" in text and "verification" in text, text
    # no 0-byte train.jsonl (load_dataset dies on one with a bare StopIteration): none, and the run dir's README.md
    # makes `load_dataset(<run dir>)` / `trl sft --dataset_name <run dir>` name it instead of mixing the other files
    assert not (out / "train.jsonl").exists() and (out / "dropped.jsonl").read_text().count("\n") == 4
    from datasets import load_dataset

    with pytest.raises(FileNotFoundError, match="train.jsonl"):
        load_dataset(str(out), split="train")
    from embedsdg_hf.training.train import run_train

    code = run_train(["--dataset", str(out), "--model", "smollm2-135m-instruct", "--output_dir", str(tmp_path / "t")])
    text = capsys.readouterr().err
    assert code == 2 and "no row passed the quality gates" in text and "nothing to train on" in text


# ---------------------------------------------------------------------------------------------------------------
# Cheap checks before the expensive work
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--bins", "0"], "bins must be >= 1"),
        (["--threshold", "1"], "threshold must be 'auto', 'quantile' or an integer >= 2"),
    ],
)
def test_validate_and_run_reject_bins_0_and_threshold_1(flags, message, capsys, tmp_path):
    code, text = _cli(capsys, ["validate", *flags])
    assert code == 2 and message in text
    code, text = _cli(capsys, ["run", *flags, "--output_dir", str(tmp_path / "run")])
    assert code == 2 and message in text and not (tmp_path / "run").exists()


def test_a_teacher_typo_is_refused_before_any_work(capsys, student, short_pool, good_teacher, tmp_path):
    out = tmp_path / "run"
    args = _random_run(short_pool, out, good_teacher)
    args[args.index("--teacher") + 1] = "transformers:smollm2-135m-instrukt"
    code, text = _cli(capsys, args)
    assert code == 2 and "[FAIL] teacher reachable" in text and "nothing was run" in text
    assert "'smollm2-135m-instrukt' is not a built-in name (smollm2-135m-instruct)" in text
    assert "Hub is not reachable" in text and not out.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty (0 rows)"),
        ('{"question": "a?", "answer": "#### 1"}\n{"question": oops\n', "line 2 is not valid JSON"),
    ],
)
def test_a_bad_pool_file_is_one_sentence_naming_it(content, message, capsys, good_teacher, tmp_path):
    pool = tmp_path / "pool.jsonl"
    pool.write_text(content)
    code, text = _cli(capsys, _random_run(pool, tmp_path / "run", good_teacher))
    assert code == 2 and str(pool) in text and message in text and "Traceback" not in text
    assert "[FAIL] seed pool" in text and not (tmp_path / "run").exists()


def test_a_datasetdict_to_a_row_building_step_says_pass_one_split(gsm8k_small):
    from datasets import DatasetDict

    from embedsdg_hf import find_sparse_regions, make_seed_pairs, make_synthetic_dataset

    splits = DatasetDict({"train": gsm8k_small, "test": gsm8k_small})
    for name, call in (
        ("find_sparse_regions", lambda: find_sparse_regions(splits, None)),
        ("make_seed_pairs", lambda: make_seed_pairs(splits, gsm8k_small, n_pairs=1)),
        ("make_synthetic_dataset", lambda: make_synthetic_dataset(splits, teacher=None, method="random")),
    ):
        message = rf"^{name} takes one Dataset, not a DatasetDict: .* Pass one split, e\.g\. "
        with pytest.raises(TypeError, match=message):
            call()


# ---------------------------------------------------------------------------------------------------------------
# Run metadata, locks, disks
# ---------------------------------------------------------------------------------------------------------------


def test_a_corrupt_run_config_is_named_with_the_fix(capsys, short_pool, good_teacher, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    write_marker(out)  # a run dir embedsdg made
    (out / "run_config.json").write_text("")  # what a full disk left before writes were atomic
    (out / "cache").mkdir()
    (out / "cache" / "requests.jsonl").write_text("")
    code, text = _cli(capsys, _random_run(short_pool, out, good_teacher))
    assert code == 2 and f"The run config '{out / 'run_config.json'}' is empty" in text
    assert "--overwrite true" in text and "Expecting value" not in text
    code, text = _cli(capsys, _random_run(short_pool, out, good_teacher, "--overwrite", "true"))
    assert code == 0, text
    assert json.loads((out / "run_config.json").read_text())["method"] == "random"


def _limited(limit_bytes: int):
    """A preexec_fn: files may not grow past ``limit_bytes`` (writes then fail with EFBIG, as on a full disk)."""

    def apply() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return apply


def test_run_metadata_is_written_atomically_on_a_full_disk(tmp_path):
    target = tmp_path / "run_config.json"
    write_json_atomic(target, {"seed": 0})
    script = textwrap.dedent(
        f"""
        from embedsdg_hf.common.rundir import write_json_atomic
        write_json_atomic({str(target)!r}, {{"blob": "x" * 200_000}})
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, preexec_fn=_limited(50_000)
    )
    assert done.returncode != 0 and "File too large" in done.stderr and str(target) in done.stderr
    assert json.loads(target.read_text()) == {"seed": 0}  # the old file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["run_config.json"]  # no temp file left behind


@pytest.mark.slow
def test_a_full_disk_is_one_line_naming_the_path_and_finished_work_is_kept(short_pool, tmp_path):
    out = tmp_path / "run"
    with FaultyOpenAIServer(default=ok(GOOD * 8)) as server:
        args = _random_run(short_pool, out, server.base_url)
        args[args.index("--n_pairs") + 1] = "40"
        args += ["--samples_per_item", "8"]  # 320 requests: the request cache outgrows the limit
        proc = _subprocess(args, tmp_path, preexec_fn=_limited(150_000))
        _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("embedsdg run: error: File too large writing ") and "finished work is kept" in last
    assert "Traceback" not in stderr
    assert json.loads((out / "run_config.json").read_text())["samples_per_item"] == 8
    assert (out / "cache" / "requests.jsonl").stat().st_size > 0  # the finished requests


def test_a_second_run_on_the_same_dir_is_refused_at_once_naming_the_holder(capsys, short_pool, good_teacher, tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import time; from embedsdg_hf.common.rundir import RunLock; lock = RunLock({str(out)!r}).acquire(); "
            "print('locked', flush=True); time.sleep(60)",
        ],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, text = _cli(capsys, _random_run(short_pool, out, good_teacher))
    finally:
        holder.kill()
        holder.wait()
    assert code == 2 and f"is in use by another embedsdg run (PID {holder.pid})" in text
    assert not (out / "run_config.json").exists()  # refused before any work


# ---------------------------------------------------------------------------------------------------------------
# Killed or interrupted runs keep their work: Ctrl-C, kill -9 during decoding, a bad teacher after decoding
# ---------------------------------------------------------------------------------------------------------------


def _parts(out: Path) -> list[Path]:
    return sorted((out / "decoded").glob("part-*")) if (out / "decoded").is_dir() else []


@pytest.fixture
def ctrl_c_reaches_children():
    """Children started from here take Ctrl-C (SIGINT) as a terminal's processes do. A suite started as a shell's
    background job (``make test &`` without job control) runs with SIGINT ignored, and a child inherits that: its
    Ctrl-C would never arrive and the run would finish with exit 0."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.slow
@pytest.mark.usefixtures("ctrl_c_reaches_children")
def test_kill_9_during_decoding_then_ctrl_c_then_resume_loses_nothing(student, short_pool, good_teacher, tmp_path):
    from datasets import load_from_disk

    out = tmp_path / "run"
    args = _embedsdg_run(short_pool, out, good_teacher)
    # kill -9 once the first pair is decoded and saved (the second one is being decoded).
    first = _subprocess(args, tmp_path)
    _wait_for(lambda: len(_parts(out)) >= 1, first)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
    assert first.returncode == -signal.SIGKILL
    for name in ("pool", "reducer", "rarity.json", "regions", "pairs"):  # every finished stage is on disk
        assert (out / name).exists(), name
    saved = load_from_disk(str(_parts(out)[0]))["decoded_text"]

    # Ctrl-C on the rerun: exit 130, one line with the resume hint; the saved part is untouched.
    second = _subprocess(args, tmp_path)
    _wait_for(lambda: (out / PID_FILE).is_file() and (out / PID_FILE).read_text().strip() == str(second.pid), second)
    second.send_signal(signal.SIGINT)
    _, stderr = second.communicate(timeout=120)
    assert second.returncode == 130, stderr[-3000:]
    assert stderr.strip().splitlines()[-1].startswith("embedsdg run: interrupted; rerun the same command")
    assert "Traceback" not in stderr
    assert load_from_disk(str(_parts(out)[0]))["decoded_text"] == saved

    third = _subprocess(args, tmp_path)
    _, stderr = third.communicate(timeout=600)
    assert third.returncode == 0, stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    decode = next(step for step in manifest["steps"] if step["step"] == "decode through the student")
    assert decode["rows_reused"] >= 1 and decode["rows_out"] == 2  # the pair decoded before the kill was reused
    assert any(step["step"].startswith("embed + reduce (reused") for step in manifest["steps"])
    pairs = load_from_disk(str(out / "pairs"))
    assert pairs["decoded_text"][: len(saved)] == saved and not _parts(out)
    assert manifest["status"] == "ok" and manifest["counts"]["train"] == 2


@pytest.mark.slow
def test_a_failing_teacher_after_decoding_keeps_the_analysis_and_a_fixed_teacher_resumes(
    capsys, student, short_pool, tmp_path
):
    out = tmp_path / "run"
    with FaultyOpenAIServer(default=status(500)) as broken:
        code, text = _cli(capsys, _embedsdg_run(short_pool, out, broken.base_url, "--teacher_max_retries", "0"))
    assert code == 1 and "2 of 2 teacher requests failed" in text and "{'HTTP 500': 2}" in text
    from datasets import load_from_disk

    decoded = load_from_disk(str(out / "pairs"))["decoded_text"]
    assert len(decoded) == 2 and all(isinstance(t, str) for t in decoded)
    kept = {name: (out / name).stat().st_mtime_ns for name in ("pool", "reducer", "rarity.json", "regions", "pairs")}

    # The same server at another address (localhost, another port) is the same config: everything is reused.
    with FaultyOpenAIServer(default=ok(GOOD)) as fixed:
        url = fixed.base_url.replace("127.0.0.1", "localhost")
        code, text = _cli(capsys, _embedsdg_run(short_pool, out, url, "--teacher_concurrency", "2"))
    assert code == 0, text
    assert {name: (out / name).stat().st_mtime_ns for name in kept} == kept
    assert json.loads((out / "manifest.json").read_text())["counts"]["train"] == 2


def test_an_empty_stage_output_loads_back(tmp_path):
    """datasets 5 writes no shard for a 0-row save_to_disk and load_from_disk then fails: the run dir reader copes."""
    import datasets

    from embedsdg_hf.common.rundir import load_saved_dataset, save_dataset_atomic

    features = datasets.Features({"question": datasets.Value("string"), "score": datasets.Value("float32")})
    save_dataset_atomic(datasets.Dataset.from_dict({"question": [], "score": []}, features=features), tmp_path / "q")
    empty = load_saved_dataset(tmp_path / "q")
    assert len(empty) == 0 and empty.features == features
    save_dataset_atomic(
        datasets.Dataset.from_dict({"question": ["a"], "score": [1.0]}, features=features), tmp_path / "q"
    )
    assert load_saved_dataset(tmp_path / "q")["question"] == ["a"]
