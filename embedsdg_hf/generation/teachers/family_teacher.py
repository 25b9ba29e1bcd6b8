"""``FamilyTeacher``: an experimental control, not a model. It answers the generation prompts (P_g, P_b) with a correct
fresh instance of a seed's problem family from the built-in word-problem generator.

Why: the targeting testbed (docs/results.md) compares EmbedSDG with RandomSDG on what they are about,
*which seeds are chosen*. A 135M teacher on a CPU writes wrong or off-topic problems, which would drown that signal.
This teacher answers every request with a new, correct problem (new names and numbers) of the family of one of the
prompt's seeds, so the arms differ only in their seeds. It is not a way to make data for real use.

How: it reads the prompt as an LLM would. The seeds are the ``### Question`` blocks of the prompt; each is looked up
by its exact text in the ``pool`` it was built with (the run's seed pool, with a family column such as the built-in
``problem_type``). For a pair (P_g) it takes one of the two seeds' families, chosen with the request's seed (the
run seed + sample index); for P_b the seed's family. It sees nothing the prompt does not carry: no row ids, no
region ids, no labels other than the pool's own. A seed that is not in the pool is a failed request (``error``).
The response goes through the same parsing and quality gates as an LLM's.

Spec: ``family:<pool file>`` (JSONL / JSON / Parquet / CSV with ``question`` and ``problem_type`` columns) or
``family:word-problems`` (the default built-in pool of 1,000 rows, seed 0).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Sequence
from typing import Any

from .base import TeacherRequest, TeacherResponse

__all__ = ["FamilyTeacher"]

# A seed in the prompt: the text between "### Question" and "### Answer" (Listings 2 and 4 of the paper).
_SEED = re.compile(r"^###[ \t]*Question[ \t]*\n(?P<question>.*?)\n###[ \t]*Answer[ \t]*$", re.MULTILINE | re.DOTALL)


class FamilyTeacher:
    """Answers P_g / P_b prompts with a fresh, correct problem of one of the seeds' families (an experimental control).

    Example:
        >>> from embedsdg_hf import make_word_problems
        >>> teacher = FamilyTeacher(make_word_problems(100, seed=0))
        >>> teacher.identity()["backend"]
        'family'
    """

    def __init__(self, pool, *, question_column: str = "question", family_column: str = "problem_type") -> None:
        from ...common.validation import require_columns

        require_columns(pool, [question_column, family_column], what="family teacher pool")
        self.question_column = question_column
        self.family_column = family_column
        self._family: dict[str, str] = {}
        for question, family in zip(pool[question_column], pool[family_column]):
            self._family.setdefault(question.strip(), family)
        digest = hashlib.sha256("\n".join(sorted(f"{q}\t{f}" for q, f in self._family.items())).encode())
        self._pool_digest = digest.hexdigest()[:16]

    def __repr__(self) -> str:
        return f"FamilyTeacher(pool={len(self._family)} questions, family_column={self.family_column!r})"

    def identity(self) -> dict[str, Any]:
        return {"backend": "family", "model": f"word-problems-family@{self._pool_digest}"}

    def seed_families(self, prompt: str) -> list[str | None]:
        """The family of each seed question in ``prompt`` (None for a question not in the pool)."""
        return [self._family.get(m["question"].strip()) for m in _SEED.finditer(prompt)]

    def choose(self, request: TeacherRequest) -> tuple[str, str]:
        """``(family, instance seed)`` for a request: one of its seeds' families, chosen with the request's seed.

        Raises ``ValueError`` when the prompt has no seed question or one that is not in the pool.
        """
        prompt = "\n".join(m["content"] for m in request.messages if m.get("role") == "user")
        families = self.seed_families(prompt)
        if not families:
            raise ValueError("no '### Question' seed in the prompt")
        if None in families:
            raise ValueError("a seed question of the prompt is not in the family teacher's pool")
        key = f"{request.seed}:{hashlib.sha256(prompt.encode()).hexdigest()[:16]}"
        return random.Random(f"family-teacher:{key}").choice(sorted(set(families))), key

    def answer(self, request: TeacherRequest) -> TeacherResponse:
        """The response to one request (a fresh instance of a seed's family, in the P_g / P_b format)."""
        from ...data.word_problems import make_word_problem

        model = self.identity()["model"]
        try:
            family, key = self.choose(request)
        except ValueError as err:
            return TeacherResponse(None, model=model, error=str(err))
        row = make_word_problem(family, seed=key)
        text = f"### Question\n{row['question']}\n### Answer\n{row['answer']}\n### <final_answer>\n"
        return TeacherResponse(text + row["final_answer"], finish_reason="stop", model=model)

    def generate(
        self,
        requests: Sequence[TeacherRequest],
        on_result: Callable[[int, TeacherResponse], None],
        *,
        progress: bool = True,
    ) -> None:
        for index, request in enumerate(requests):
            on_result(index, self.answer(request))


def load_family_teacher(source: str, **kwargs: Any) -> FamilyTeacher:
    """A :class:`FamilyTeacher` over the pool at ``source`` (a file or ``word-problems``)."""
    from ...data.seed_pools import load_seed_pool

    return FamilyTeacher(load_seed_pool(source), **kwargs)
