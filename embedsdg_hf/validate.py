"""``embedsdg validate``: check a recipe without generating anything.

Checks, in order: the seed pool loads and has the template's columns; the prompts load and render with real pool
rows; the student resolves; the teacher is reachable (HTTP: ``GET /models`` on every base URL; in-process: the
model resolves). Each check reports ``ok`` or the reason; nothing is generated and no output dir is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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
        return Check(name, False, f"{type(err).__name__}: {err}")


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
    checks.append(_run("teacher reachable", lambda: _check_teacher(config)))
    return checks


def _check_teacher(config: PipelineConfig) -> str:
    from .common.models import resolve_model
    from .generation.teachers import load_teacher

    teacher = load_teacher(config.teacher)
    if config.teacher.startswith("transformers:"):
        return f"in-process transformers, {resolve_model(config.teacher.split(':', 1)[1])}"
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
    return "\n".join(f"[{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}" for c in checks)
