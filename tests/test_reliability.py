"""Reliability round 3 (issue 24; issue 23's stage declarations; issue 22's lock file and flag spellings): one test
per finding, each planting the fault a careless or hostile user would (another tool's folder, a replaced pool file,
a password in the teacher URL, bad settings, ``~`` paths, a trickling server, bad rows, bad flags) against the real
CLI, real GSM8K rows and real HTTP servers on 127.0.0.1.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from dataclasses import fields
from pathlib import Path

import pytest
from _runs import random_run_args as _random_run
from _servers import FaultyOpenAIServer, malformed, ok, status

from embedsdg_hf.cli import main
from embedsdg_hf.config import PipelineConfig
from embedsdg_hf.pipeline import prepare_output_dir

GOOD = (
    "### Question\nTom has 3 bags of 4 apples. How many apples?\n### Answer\nHe has 3*4=<<3*4=12>>12 apples.\n#### 12"
)
NULL_CONTENT = '{"choices": [{"message": {"role": "assistant", "content": null}, "finish_reason": "stop"}]}'


@pytest.fixture
def teacher():
    with FaultyOpenAIServer(default=ok(GOOD)) as server:
        yield server


def _cli(capsys, args: list[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _names(path: Path) -> set[str]:
    return {p.name for p in path.iterdir()}


# -- 1. ownership ---------------------------------------------------------------------------------------------------


def test_1_a_folder_with_another_tools_run_config_is_refused_and_left_intact(capsys, short_pool, teacher, tmp_path):
    theirs = tmp_path / "theirs"
    (theirs / "checkpoints").mkdir(parents=True)
    (theirs / "run_config.json").write_text('{"learning_rate": 0.1}')
    (theirs / "thesis.txt").write_text("years of work")
    (theirs / "checkpoints" / "step-10.bin").write_text("weights")
    for extra in ([], ["--overwrite", "true"]):
        code, out, err = _cli(capsys, _random_run(short_pool, theirs, teacher.base_url, *extra))
        assert code == 2 and "not an embedsdg run dir" in err and "Traceback" not in out + err
    assert _names(theirs) == {"run_config.json", "thesis.txt", "checkpoints"}
    assert (theirs / "run_config.json").read_text() == '{"learning_rate": 0.1}'
    assert (theirs / "checkpoints" / "step-10.bin").read_text() == "weights"


def test_1_a_changed_setting_or_overwrite_deletes_only_what_the_run_made(tmp_path):
    out = tmp_path / "run"
    prepare_output_dir(PipelineConfig(output_dir=str(out), bins=5))
    for name in ("pool", "reducer", "regions", "pairs", "cache"):
        (out / name).mkdir()
    (out / "manifest.json").write_text('{"status": "failed"}')
    (out / "notes.md").write_text("my notes")  # the user's, added after the run
    (out / "training" / "adapter").mkdir(parents=True)
    (out / "training" / "adapter" / "adapter_model.safetensors").write_text("trained for a day")
    prepare_output_dir(PipelineConfig(output_dir=str(out), bins=8))  # an unfinished run takes the corrected config
    assert {"notes.md", "training", "pool", "reducer", "cache"} <= _names(out) and not (out / "regions").exists()
    (out / "manifest.json").write_text('{"status": "ok"}')
    prepare_output_dir(PipelineConfig(output_dir=str(out), bins=9, overwrite=True))
    assert (out / "notes.md").read_text() == "my notes"
    assert (out / "training" / "adapter" / "adapter_model.safetensors").read_text() == "trained for a day"
    assert not (out / "pool").exists() and not (out / "manifest.json").exists() and (out / "cache").is_dir()


def test_1_overwrite_through_links_never_follows_them_into_user_files(tmp_path):
    real = tmp_path / "real-run"
    prepare_output_dir(PipelineConfig(output_dir=str(real)))
    (real / "manifest.json").write_text('{"status": "ok"}')
    (real / "mine.txt").write_text("the user's")
    users = tmp_path / "users-folder"
    users.mkdir()
    (users / "data.csv").write_text("a,b\n")
    (real / "pool").symlink_to(users, target_is_directory=True)  # a link where the run keeps a folder
    link = tmp_path / "link-to-run"
    link.symlink_to(real, target_is_directory=True)
    prepare_output_dir(PipelineConfig(output_dir=str(link), n_pairs=5, overwrite=True))
    assert (real / "mine.txt").read_text() == "the user's"
    assert (users / "data.csv").read_text() == "a,b\n" and not (real / "pool").exists()


# -- 2. content fingerprints ----------------------------------------------------------------------------------------


def test_2_a_replaced_pool_file_is_refused_for_a_finished_run_and_redone_for_an_unfinished_one(short_pool, tmp_path):
    out = tmp_path / "run"
    config = PipelineConfig(output_dir=str(out), seed_pool=str(short_pool))
    prepare_output_dir(config)
    for name in ("pool", "reducer", "cache"):
        (out / name).mkdir()
    (out / "grid.json").write_text("{}")
    (out / "manifest.json").write_text('{"status": "ok"}')
    prepare_output_dir(config)  # same file: resumed, nothing redone
    assert {"pool", "reducer", "grid.json"} <= _names(out)
    rows = short_pool.read_text().splitlines()
    short_pool.write_text("\n".join(reversed(rows)) + "\n")  # same path, other content
    with pytest.raises(FileExistsError, match=r"seed_pool .*pool\.jsonl.* changed.*--overwrite true"):
        prepare_output_dir(config)
    (out / "manifest.json").write_text('{"status": "failed"}')
    prepare_output_dir(config)  # unfinished: the stages that read the pool are redone
    assert not {"pool", "reducer", "grid.json"} & _names(out) and (out / "cache").is_dir()


def test_2_the_manifest_holds_the_inputs_fingerprints(capsys, short_pool, teacher, tmp_path):
    import hashlib

    out = tmp_path / "run"
    code, _, err = _cli(capsys, _random_run(short_pool, out, teacher.base_url))
    assert code == 0, err
    inputs = json.loads((out / "manifest.json").read_text())["inputs"]
    assert inputs["files"]["seed_pool"] == {str(short_pool): hashlib.sha256(short_pool.read_bytes()).hexdigest()}
    assert inputs["pool_fingerprint"]


# -- 3. secrets -----------------------------------------------------------------------------------------------------


def test_3_credentials_in_the_teacher_url_and_api_keys_are_never_written_nor_printed(capsys, short_pool, tmp_path):
    out = tmp_path / "run"
    with FaultyOpenAIServer(default=ok(GOOD)) as server:
        server.script(status(500))  # one request fails: its error message names the endpoint
        url = server.base_url.replace("http://", "http://alice:pw-s3cret-1@")
        args = _random_run(short_pool, out, url, "--teacher_max_retries", "0")
        args += ["--teacher_extra_body", '{"api_key": "sk-s3cret-2", "top_k": 5}']
        code, stdout, stderr = _cli(capsys, ["-v", *args])  # -v: every INFO log line is on stderr too
        assert server.chat_requests  # the run did reach the server
    assert code == 0, stderr
    errors = [json.loads(line)["error"] for line in (out / "synthetic.jsonl").read_text().splitlines()]
    assert any(e and e.startswith("HTTP 500 from http://***@127.0.0.1") for e in errors), errors
    for text in [stdout, stderr] + [p.read_bytes().decode("utf-8", "replace") for p in out.rglob("*") if p.is_file()]:
        assert "s3cret" not in text


# -- 4. early validation --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--max_tokens", "0"], "max_tokens must be >= 1"),
        (["--temperature", "-1"], "temperature must be >= 0"),
        (["--samples_per_item", "0"], "samples_per_item must be >= 1"),
        (["--teacher_concurrency", "0"], "teacher_concurrency must be >= 1"),
        (["--top_p", "0"], "top_p must be in (0, 1]"),
        (["--decontaminate", "nosuch-test"], "neither built-in eval sets"),
        (["--self_consistency", "2", "--consistency_teacher", "openia:x"], "Unknown teacher spec 'openia:x'"),
        (["--push_to_hub", "me/data"], "HF_HUB_OFFLINE is set"),
    ],
)
def test_4_settings_checkable_without_a_model_fail_before_any_work(
    capsys, monkeypatch, short_pool, teacher, tmp_path, flags, words
):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    out = tmp_path / "run"
    code, stdout, stderr = _cli(capsys, _random_run(short_pool, out, teacher.base_url, *flags))
    assert code == 2 and words in stdout + stderr and "Traceback" not in stdout + stderr
    assert not out.exists() and not teacher.chat_requests  # nothing was run, no request sent


# -- 5. ~ and $VARS -------------------------------------------------------------------------------------------------


def test_5_home_and_env_vars_are_expanded_in_paths(capsys, monkeypatch, short_pool, teacher, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("POOL_DIR", str(short_pool.parent))
    monkeypatch.chdir(tmp_path)
    args = _random_run("$POOL_DIR/pool.jsonl", "~/runs/r1", teacher.base_url)
    code, _, err = _cli(capsys, args)
    assert code == 0, err
    assert (home / "runs" / "r1" / "train.jsonl").is_file() and not (tmp_path / "~").exists()
    assert json.loads((home / "runs" / "r1" / "run_config.json").read_text())["seed_pool"] == str(short_pool)


# -- 6. a deadline on the whole exchange ----------------------------------------------------------------------------


class _Trickle(http.server.BaseHTTPRequestHandler):
    """A chat completion whose body comes one byte every 0.1 s (each read is quick; the whole takes ~15 s)."""

    def do_POST(self):  # noqa: N802 - the http.server API
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps({"choices": [{"message": {"content": GOOD}, "finish_reason": "stop"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            for byte in body:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass  # the client gave up: what the test wants

    def log_message(self, *args):
        pass


def test_6_teacher_timeout_bounds_a_response_trickled_a_byte_at_a_time():
    from embedsdg_hf.generation.teachers import OpenAITeacher, TeacherRequest

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        teacher = OpenAITeacher("m", f"http://127.0.0.1:{httpd.server_address[1]}/v1", timeout=1.0, max_retries=1)
        teacher.backoff_base = 0.01
        results = {}
        start = time.monotonic()
        teacher.generate([TeacherRequest(({"role": "user", "content": "q"},))], results.__setitem__, progress=False)
        elapsed = time.monotonic() - start
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert elapsed < 6.0, f"two 1 s attempts took {elapsed:.1f} s"
    assert not results[0].ok and "no complete answer within 1 s" in results[0].error and results[0].attempts == 2


# -- 7. one error path ----------------------------------------------------------------------------------------------


def _busy_decode_cache(tmp_path: Path) -> list[str]:
    import filelock

    cache = tmp_path / "decode.jsonl"
    lock = filelock.FileLock(f"{cache}.lock", timeout=0)
    lock.acquire()  # another run holds it (released with the test's process)
    _busy_decode_cache.held = lock
    return ["run", "--decode_cache", str(cache), "--output_dir", str(tmp_path / "o")]


@pytest.mark.parametrize(
    "case",
    [
        "run-missing-config",
        "validate-missing-config",
        "train-missing-config",
        "ablation-missing-config",
        "malformed-yaml",
        "bins-list",
        "make-pool-output-dir",
        "make-pool-negative-n",
        "testbed-negative-n",
        "busy-decode-cache",
    ],
)
def test_7_every_user_error_is_one_line_with_exit_code_2(capsys, tmp_path, case):
    (tmp_path / "bad.yaml").write_text("n_pairs: 3\n  oops: [\n")
    (tmp_path / "bins.yaml").write_text("bins: [1, 2]\n")
    missing = str(tmp_path / "nosuch.yaml")
    args, words = {
        "run-missing-config": (["run", "--config", missing], "does not exist"),
        "validate-missing-config": (["validate", "--config", missing], "does not exist"),
        "train-missing-config": (["train", "--config", missing], "does not exist"),
        "ablation-missing-config": (
            ["ablation", "--config", missing, "--sft-config", missing, "--budgets", "4"],
            "does not exist",
        ),
        "malformed-yaml": (["run", "--config", str(tmp_path / "bad.yaml")], "line 2 is not valid YAML"),
        "bins-list": (["run", "--config", str(tmp_path / "bins.yaml")], "bins must be an integer or null"),
        "make-pool-output-dir": (["make-pool", "--n", "3", "--output", str(tmp_path)], "is a folder"),
        "make-pool-negative-n": (["make-pool", "--n", "-3", "--output", str(tmp_path / "p.jsonl")], "--n must be"),
        "testbed-negative-n": (["testbed", "--quick", "--n", "-5", "--output-dir", str(tmp_path / "t")], "--n must"),
        "busy-decode-cache": (None, "is in use by another run"),
    }[case]
    if args is None:
        args = _busy_decode_cache(tmp_path)
    code, stdout, stderr = _cli(capsys, args)
    assert code == 2 and words in stdout + stderr, stdout + stderr
    assert "Traceback" not in stdout + stderr
    assert len([line for line in stderr.splitlines() if "error" in line]) == 1


# -- 8. bad rows ----------------------------------------------------------------------------------------------------


def test_8_bytes_that_are_not_utf8_are_named_by_file_and_line_before_any_work(capsys, short_pool, teacher, tmp_path):
    lines = short_pool.read_bytes().splitlines(keepends=True)
    lines[2] = b'{"question": "caf\xe9 au lait", "answer": "#### 1"}\n'
    short_pool.write_bytes(b"".join(lines))
    out = tmp_path / "run"
    code, stdout, stderr = _cli(capsys, _random_run(short_pool, out, teacher.base_url))
    assert code == 2 and f"'{short_pool}' line 3 is not UTF-8" in stdout + stderr, stdout + stderr
    assert not teacher.chat_requests


def test_8_null_text_is_skipped_with_a_count_never_embedded_as_none(capsys, short_pool, teacher, tmp_path):
    rows = [json.loads(line) for line in short_pool.read_text().splitlines()]
    rows[0]["question"] = None
    rows[1]["answer"] = None
    short_pool.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "run"
    code, _, err = _cli(capsys, _random_run(short_pool, out, teacher.base_url, "--n_pairs", "38"))
    assert code == 0, err
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    assert counts["pool"] == 38 and counts["pool_rows_skipped"] == 2
    assert not any("None" in json.dumps(r.body["messages"]) for r in teacher.chat_requests)


def test_8_empty_answers_are_not_cached_so_the_fixed_teacher_is_asked_again(capsys, short_pool, tmp_path):
    out = tmp_path / "run"
    with FaultyOpenAIServer(default=malformed(NULL_CONTENT)) as server:
        code, _, err = _cli(capsys, _random_run(short_pool, out, server.base_url))
        assert code == 1 and "empty answer" in err
        assert len(server.chat_requests) == 4  # a null answer is a failed request, not retried as a transport error
        server.default = ok(GOOD)  # the teacher is fixed: the same command resumes and asks again
        code, _, err = _cli(capsys, _random_run(short_pool, out, server.base_url))
        assert code == 0, err
        assert len(server.chat_requests) == 8
    assert json.loads((out / "manifest.json").read_text())["counts"]["train"] >= 1


# -- 9. wording -----------------------------------------------------------------------------------------------------


def test_9_messages_name_the_option_and_what_the_data_is(capsys, tmp_path):
    from embedsdg_hf.data.eval_sets import load_eval_data

    dead = "openai:m@http://127.0.0.1:9/v1"  # nothing listens: no run can get far
    code, _, err = _cli(capsys, ["run", "--pool_size", "0", "--teacher", dead, "--output_dir", str(tmp_path / "o")])
    assert code == 2 and "pool_size must be >= 1" in err
    bad = tmp_path / "eval.jsonl"
    bad.write_text('{"question": "q", "answer": "#### 1"}\n{"question": oops\n')
    with pytest.raises(ValueError, match=r"The evaluation data .*eval\.jsonl' line 2 is not valid JSON") as caught:
        load_eval_data(str(bad))
    assert "seed pool" not in str(caught.value)
    args = ["analyze", "--predictions", str(tmp_path / "missing.jsonl"), "--model", "m", "--pool", "word-problems"]
    code, _, err = _cli(capsys, args)
    assert code == 2 and "--predictions" in err and "embedsdg evaluate" in err and "Directory" not in err


# -- issue 23 item 1: the stage each setting feeds ------------------------------------------------------------------


def test_every_config_field_declares_the_stage_it_feeds():
    from embedsdg_hf.config import OPERATIONAL, STAGES

    undeclared = [f.name for f in fields(PipelineConfig) if f.metadata.get("stage") not in (*STAGES, OPERATIONAL)]
    assert undeclared == [], f"declare metadata stage= on {undeclared} (config.py STAGES)"
    assert all(set(f.metadata) == {"help"} for f in fields(PipelineConfig))  # what argument parsers see


def test_changing_teacher_response_format_keeps_the_analysis_and_the_decoding(tmp_path):
    out = tmp_path / "run"
    base = {"output_dir": str(out), "teacher": "openai:m@http://127.0.0.1:9/v1"}
    prepare_output_dir(PipelineConfig(**base))
    saved = {"pool", "reducer", "regions", "pairs", "cache"}
    for name in saved:
        (out / name).mkdir()
    (out / "grid.json").write_text("{}")
    (out / "synthetic.jsonl").write_text("")
    (out / "manifest.json").write_text('{"status": "failed"}')
    prepare_output_dir(PipelineConfig(**base, teacher_response_format="json", teacher_extra_body='{"top_k": 5}'))
    assert saved | {"grid.json"} <= _names(out) and not (out / "synthetic.jsonl").exists()
    prepare_output_dir(PipelineConfig(**base, knn_k=7))  # a selection setting: the analysis stays, selection goes
    assert {"pool", "reducer", "grid.json"} <= _names(out) and not {"regions", "pairs"} & _names(out)


# -- issue 22 items 5-6 ---------------------------------------------------------------------------------------------


def test_no_lock_file_stays_in_a_finished_or_failed_run_dir(capsys, short_pool, tmp_path):
    with FaultyOpenAIServer(default=ok(GOOD)) as server:
        done, failed = tmp_path / "done", tmp_path / "failed"
        assert _cli(capsys, _random_run(short_pool, done, server.base_url))[0] == 0
        server.default = status(400)
        assert _cli(capsys, _random_run(short_pool, failed, server.base_url))[0] == 1
    for out in (done, failed):
        assert not {"run.lock", "run.lock.pid"} & _names(out), _names(out)


@pytest.mark.parametrize(
    "args, words",
    [
        (["coverage", "RUN", "--output_dir", "X"], "does not exist"),
        (["analyze", "--run_dir", "RUN", "--predictions", "X"], "is not an `embedsdg run` output dir"),
        (["testbed", "--quick", "--n_pairs", "0", "--output_dir", "X"], "--n-pairs must be an integer >= 1; got 0"),
        (["ablation", "--config", "NOSUCH", "--sft_config", "X", "--budgets", "4", "--eval_limit", "3"], "NOSUCH"),
    ],
)
def test_every_subcommand_takes_both_flag_spellings(capsys, tmp_path, args, words):
    args = [str(tmp_path / a) if a in ("RUN", "X", "NOSUCH") else a for a in args]
    code, stdout, stderr = _cli(capsys, args)
    assert code == 2 and words in stderr and "unrecognized arguments" not in stderr, stderr
