"""Secrets out of everything a run writes, logs or pushes: URL user-info (``http://user:password@host``) and the
values of ``api_key``-like keys.

Example:
    >>> redact_text("openai:m@http://me:hunter2@127.0.0.1:8000/v1")
    'openai:m@http://***@127.0.0.1:8000/v1'
    >>> redact({"teacher_extra_body": {"api_key": "sk-1", "top_k": 20}})
    {'teacher_extra_body': {'api_key': '***', 'top_k': 20}}
"""

from __future__ import annotations

import re
from typing import Any

#: ``scheme://user[:password]@``: the user-info of a URL (RFC 3986), anywhere in a text.
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s,]+@")
#: Keys whose values are secrets (exact names, so ``max_tokens`` or ``api_key_env`` are kept).
_SECRET_KEY = re.compile(
    r"^(api[_-]?key|x[_-]api[_-]key|access[_-]?token|auth[_-]?token|token|secret|password|authorization)$", re.I
)
MASK = "***"


def redact_text(text: str) -> str:
    """``text`` with the user-info of every URL in it replaced by ``***``."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)


def redact(value: Any) -> Any:
    """A copy of ``value`` (str, dict, list, tuple) with URL user-info and the values of secret keys masked."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: MASK if isinstance(k, str) and _SECRET_KEY.match(k) else redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v) for v in value)
    return value
