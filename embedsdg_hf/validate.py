"""``embedsdg validate``: check a recipe without generating anything.

Checks, in order: the seed pool loads and has the template's columns; the prompts load and render with real pool
rows; the student resolves; the teacher is reachable (HTTP: ``GET /models`` on every base URL; in-process: the
model resolves), and so is the self-consistency teacher; the decontamination sets are known names or files; the
decode cache is not in use by another run; the Hub can be reached when the run pushes. (Settings that need no file
or server, such as sampling parameters, are checked when the recipe is parsed.) Each check reports ``ok`` or the
reason, secrets redacted; nothing is generated and no output dir is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .common.redact import redact_text
from .config import PipelineConfig


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def _run(name: str, fn: Callable[[], str]) -> Check:
    try:
        return Check(name, True, fn())
    except Exception as err:  # every failure becomes a reported check, never a traceback
        return Check(name, False, redact_text(f"{type(err).__name__}: {err}"))


def validate_config(config: PipelineConfig) -> list[Check]:
    """Run every check of a recipe; return them in order (a failed pool check skips what depends on it)."""
    from .common.models import resolve_model
    from .data.seed_pools import load_seed_pool
    from .generation.generate import METHOD_PROMPTS
    from .generation.prompts import load_prompt
    from .pipeline import _template_columns

    checks: list[Check] = []
    state: dict = {}

    def pool() -> str:
        state["pool"] = load_seed_pool(
            config.seed_pool, split=config.pool_split, name=config.pool_name, n=config.pool_size or 8, seed=config.seed
        )
        state["columns"] = _template_columns(config.text_template)
        from .common.validation import require_rows, require_template_columns

        require_rows(state["pool"], what="seed pool")
        require_template_columns(state["pool"], config.text_template)
        return f"{config.seed_pool}: columns {state['pool'].column_names}"

    checks.append(_run("seed pool + text template", pool))
    if checks[-1].ok:

        def prompts() -> str:
            rows = state["pool"].select(range(min(2, len(state["pool"])))).to_list()
            question, answer = state["columns"]
            first, second = rows[0], rows[-1]
            texts = [config.text_template.format_map(r) for r in rows]
            load_prompt("decode_v1").render(examples=texts[0], input=texts[-1])
            name, fields = METHOD_PROMPTS[config.method]
            template = load_prompt(config.generate_prompt or name, required_fields=fields)
            values = {
                "q1": first[question],
                "a1": first[answer],
                "q2": second[question],
                "a2": second[answer],
                "interpolated_decoded_text": "(decoded text)",
            }
            template.render(**{k: values[k] for k in fields})
            return f"decode_v1, {template.tag}"

        checks.append(_run("prompts render", prompts))
    checks.append(_run("student", lambda: resolve_model(config.student)))
    checks.append(_run("teacher reachable", lambda: _check_teacher(config, config.teacher)))
    if config.self_consistency and config.consistency_teacher:
        checks.append(_run("self-consistency teacher", lambda: _check_teacher(config, config.consistency_teacher)))
    if config.decontaminate is not None:
        checks.append(_run("decontamination sets", lambda: _check_eval_sets(config.decontaminate)))
    if config.decode_cache:
        checks.append(_run("decode cache free", lambda: _check_free(config.decode_cache)))
    if config.push_to_hub:
        checks.append(_run("Hub reachable (push_to_hub)", lambda: _check_hub(config.push_to_hub)))
    return checks


def _check_eval_sets(spec: str) -> str:
    """Every comma-separated item is a built-in eval set or an existing local file (nothing is loaded)."""
    from pathlib import Path

    from .data.eval_sets import BUILTIN_EVAL_DATA

    items = [item.strip() for item in spec.split(",") if item.strip()]
    unknown = [item for item in items if item not in BUILTIN_EVAL_DATA and not Path(item).expanduser().is_file()]
    if unknown:
        raise ValueError(
            f"decontaminate names {unknown}, which are neither built-in eval sets ({sorted(BUILTIN_EVAL_DATA)}) nor "
            "existing files; give those, or 'none' to turn the check off."
        )
    return ", ".join(items)


def _check_free(path: str) -> str:
    """The decode cache's writer lock is free (another run sharing the file is not running now)."""
    from pathlib import Path

    import filelock

    lock_file = Path(f"{path}.lock")
    existed = lock_file.exists()
    try:
        with filelock.FileLock(str(lock_file), timeout=0):
            pass
    except filelock.Timeout:
        raise ValueError(
            f"decode_cache {path!r} is in use by another run (lock {str(lock_file)!r}); wait for it to finish, or "
            "give this run another decode_cache."
        ) from None
    if not existed:
        lock_file.unlink(missing_ok=True)  # leave no trace of the check
    return path


def _check_hub(repo_id: str) -> str:
    """Pushing is possible: not offline, and the Hub answers with the user's token."""
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        raise ConnectionError(
            f"push_to_hub {repo_id!r} needs the Hub, but HF_HUB_OFFLINE is set; unset it or drop --push_to_hub."
        )
    try:
        user = HfApi().whoami()
    except Exception as err:  # no token, 401, no network
        raise ConnectionError(
            f"push_to_hub {repo_id!r}: the Hub did not accept the token ({type(err).__name__}: {err}); "
            "run `hf auth login`."
        ) from None
    return f"{repo_id} as {user.get('name', '?')}"


def _check_teacher(config: PipelineConfig, spec: str) -> str:
    from .common.models import resolve_model
    from .generation.teachers import load_teacher

    teacher = load_teacher(spec)
    if spec.startswith("transformers:"):
        return f"in-process transformers, {resolve_model(spec.split(':', 1)[1])}"
    if not spec.startswith("openai:"):
        return repr(teacher)
    import os

    from .generation.teachers.openai_teacher import httpx  # httpx, or httpx2 where only that distribution is installed

    headers = {}
    if os.environ.get(config.api_key_env):
        headers["Authorization"] = f"Bearer {os.environ[config.api_key_env]}"
    answered = []
    for base in teacher.base_urls:
        try:
            response = httpx.get(f"{base.rstrip('/')}/models", headers=headers, timeout=10.0)
        except httpx.HTTPError as err:
            raise ConnectionError(f"{base}/models did not answer: {type(err).__name__}: {err}") from None
        if response.status_code in (401, 403):
            raise PermissionError(
                f"{base} rejected the API key from ${config.api_key_env} (HTTP {response.status_code})."
            )
        # Any other answer means a server is there (`transformers serve` answers /models with 500 when it has no
        # Hub cache to list); the model name itself is checked by the first real request.
        answered.append(f"{base} answered (HTTP {response.status_code})")
    return ", ".join(answered)


def format_checks(checks: list[Check]) -> str:
    return "\n".join(f"[{'ok' if c.ok else 'FAIL'}] {c.name}: {redact_text(c.detail)}" for c in checks)
