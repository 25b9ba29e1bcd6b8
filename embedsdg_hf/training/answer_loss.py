"""Answer loss: how surprised the student is by a reference solution, a continuous measure of weakness.

Accuracy of a small student can sit on the floor (the 135M built-in student writes correct ``<<a+b=c>>`` steps but
combines the wrong quantities, ~4% on word problems) while it still knows some problems better than others. The
**answer loss** of one example is the mean token negative log-likelihood of its reference solution given its question,
in the student's chat format (user turn = the question, assistant turn = the solution), exactly the tokens SFT trains
on. Lower is better; its mean over a family or a region of the embedding space is that part's weakness.

    >>> scored = add_answer_loss(test, model="smollm2-135m-instruct", adapter="outputs/sm")  # doctest: +SKIP
    >>> scored["answer_loss"][:2]  # doctest: +SKIP
    [0.41, 0.93]
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

__all__ = ["add_answer_loss", "answer_loss_by_group"]

logger = logging.getLogger(__name__)


def _encode(tokenizer, question: str, answer: str, max_length: int) -> tuple[list[int], int]:
    """Token ids of the chat (user question, assistant answer) and where the answer's tokens start."""
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )
    full = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}, {"role": "assistant", "content": answer}], tokenize=False
    )
    if not full.startswith(prompt):  # a template that rewrites earlier turns: fall back to concatenation
        full = prompt + answer
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = tokenizer(full, add_special_tokens=False)["input_ids"][:max_length]
    return ids, min(len(prompt_ids), len(ids))


def add_answer_loss(
    data,
    *,
    model: str,
    adapter: str | Path | None = None,
    question_column: str = "question",
    answer_column: str = "answer",
    batch_size: int = 16,
    max_length: int = 1024,
    device: str | None = None,
    column: str = "answer_loss",
):
    """Add ``column`` (mean NLL per answer token, nats) and ``answer_tokens`` to every row of ``data``.

    Args:
        model / adapter: the student (built-in name, folder or Hub id) and an optional LoRA adapter folder on top.
        question_column / answer_column: the user turn and the reference assistant turn.
        batch_size / max_length: rows per forward pass; tokens kept per row (a row whose answer is cut away
            entirely gets NaN and a warning).

    Returns a new ``Dataset`` (the input's columns plus ``column`` and ``answer_tokens``).
    """
    from ..common.models import fork_safe_torch
    from ..common.validation import require_columns, require_rows
    from .evaluate import _load_model

    require_rows(data, what="data", step="answer loss")
    require_columns(data, [question_column, answer_column], what="answer-loss data")
    if batch_size < 1 or max_length < 2:
        raise ValueError(f"batch_size must be >= 1 and max_length >= 2, got {batch_size} and {max_length}.")
    torch = fork_safe_torch()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    student, tokenizer = _load_model(model, adapter, device)
    if not tokenizer.chat_template:
        raise ValueError(f"The tokenizer of {model!r} has no chat template; the answer loss is measured through it.")
    encoded = [
        _encode(tokenizer, str(q), str(a), max_length) for q, a in zip(data[question_column], data[answer_column])
    ]
    order = np.argsort([len(ids) for ids, _ in encoded], kind="stable")  # similar lengths share a batch
    losses, counts = np.full(len(encoded), np.nan), np.zeros(len(encoded), dtype=np.int64)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            width = max(len(encoded[i][0]) for i in rows)
            ids = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            target = torch.zeros((len(rows), width), dtype=torch.bool)
            for j, i in enumerate(rows):
                tokens, answer_start = encoded[i]
                ids[j, : len(tokens)] = torch.tensor(tokens)
                mask[j, : len(tokens)] = 1
                target[j, answer_start : len(tokens)] = True
            logits = student(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
            nll = torch.nn.functional.cross_entropy(
                logits[:, :-1].transpose(1, 2), ids[:, 1:].to(device), reduction="none"
            ).cpu()
            scored = target[:, 1:]
            for j, i in enumerate(rows):
                n = int(scored[j].sum())
                counts[i] = n
                if n:
                    losses[i] = float(nll[j][scored[j]].mean())
    empty = int((counts == 0).sum())
    if empty:
        logger.warning(
            "%d row(s) have no answer tokens within max_length=%d: their %s is NaN.", empty, max_length, column
        )
    return data.add_column(column, losses.tolist()).add_column("answer_tokens", counts.tolist())


def answer_loss_by_group(groups, losses) -> dict[str, dict]:
    """Per group (e.g. problem family): n, mean answer loss and a 95% CI of the mean (t interval).

    Example:
        >>> answer_loss_by_group(["a", "a", "b"], [1.0, 3.0, 0.5])["a"]["mean"]
        2.0
    """
    from scipy import stats

    labels, values = np.asarray(groups), np.asarray(losses, dtype=float)
    result = {}
    for name in sorted(set(labels.tolist())):
        x = values[(labels == name) & ~np.isnan(values)]
        mean = float(x.mean()) if x.size else float("nan")
        half = float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1 else float("nan")
        result[name] = {"n": int(x.size), "mean": mean, "ci_low": mean - half, "ci_high": mean + half}
    return result
