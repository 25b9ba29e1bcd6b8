"""Text normalisation shared by deduplication (exact hashes) and decontamination (n-grams)."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_WORD = re.compile(r"\w+")


def words(text: str | None) -> list[str]:
    """Lower-cased word tokens after Unicode NFKC: punctuation, spacing and case do not matter.

    Example:
        >>> words("Natalia sold  clips to 48 of her friends!")
        ['natalia', 'sold', 'clips', 'to', '48', 'of', 'her', 'friends']
    """
    return _WORD.findall(unicodedata.normalize("NFKC", text or "").casefold())


def text_hash(text: str | None) -> int:
    """A stable signed 64-bit hash of the normalised text (the same across processes and runs)."""
    digest = hashlib.blake2b(" ".join(words(text)).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def render_texts(batch: dict[str, list], template: str, fields: list[str]) -> list[str]:
    """``template.format`` over each row of a batch (``fields`` are the template's columns)."""
    return [template.format_map(dict(zip(fields, values))) for values in zip(*(batch[f] for f in fields))]
