"""Versioned prompt templates: the decode prompt P_d and the teacher prompts P_g (EmbedSDG) and P_b (RandomSDG).

The packaged templates are plain ``.txt`` files next to this module, named ``<purpose>_v<N>.txt``; a changed prompt
is a new file with a new ``_vN`` suffix, so the version recorded with every generated row names the exact text:

- ``generate_embedsdg_v1``: P_g, the paper's Listing 2 (fields ``{q1}``, ``{a1}``, ``{q2}``, ``{a2}``,
  ``{interpolated_decoded_text}``);
- ``generate_random_v1``: P_b, the paper's Listing 4 (fields ``{q1}``, ``{a1}``);
- ``decode_v1``: P_d, the copy prompt of Listings 1/3 (fields ``{examples}``, ``{input}``);
- ``solve_gsm8k_v1`` / ``solve_math_v1``: the self-consistency check's "solve this" prompts (field ``{question}``;
  answers end in ``#### N`` / ``\\boxed{}``).

A user's own template is a path to a ``.txt`` file; its version is ``file:<stem>@<sha256[:12]>`` of its bytes.

Placeholders are ``{identifier}`` (letters, digits, underscore). Every other brace is literal text, with no escaping
(``{{`` stays ``{{``; ``{Example 1}`` or ``{"a": 1}`` are kept as written). Rendering substitutes values in one regex
pass over the template, so a value that itself contains braces (``{x}``, ``f(x) = {1, 2}``, LaTeX) is inserted as is
and never re-interpreted. As in Jinja, one trailing newline of the file is dropped (editors add it).

Public API: :func:`load_prompt`, :class:`PromptTemplate`, :func:`available_prompts`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

__all__ = ["PromptTemplate", "available_prompts", "load_prompt"]

_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_VERSIONED_NAME = re.compile(r"^(?P<base>[A-Za-z0-9_]+)_(?P<version>v\d+)$")


@dataclass(frozen=True)
class PromptTemplate:
    """A prompt with ``{field}`` placeholders.

    Attributes:
        name: ``"generate_embedsdg_v1"`` for a packaged template, the file stem for a user's file.
        version: ``"v1"`` (the ``_vN`` suffix) for a packaged template, ``"file:<stem>@<sha256[:12]>"`` for a file.
        text: the template text.
        source: where it was read from (a path).

    Example:
        >>> t = PromptTemplate(name="demo_v1", version="v1", text="Q: {q1} -> {a1}", source="<inline>")
        >>> t.fields
        ('q1', 'a1')
        >>> t.render(q1="What is {x}?", a1="4")
        'Q: What is {x}? -> 4'
    """

    name: str
    version: str
    text: str
    source: str

    @property
    def fields(self) -> tuple[str, ...]:
        """The placeholder names, in order of first use."""
        return tuple(dict.fromkeys(_FIELD.findall(self.text)))

    @property
    def tag(self) -> str:
        """One string naming the exact template: ``"generate_embedsdg_v1"`` or ``"file:my_prompt@0123abcd4567"``."""
        return self.version if self.version.startswith("file:") else self.name

    def validate(self, required: Iterable[str], *, purpose: str = "this step") -> None:
        """Raise ``ValueError`` unless the template uses exactly the ``required`` fields (none missing, none unknown).

        Example:
            >>> load_prompt("generate_random_v1").validate(["q1", "a1"], purpose="RandomSDG")
        """
        required = tuple(required)
        missing = [f for f in required if f not in self.fields]
        unknown = [f for f in self.fields if f not in required]
        problems = []
        if missing:
            problems.append(f"lacks the field{'s' if len(missing) > 1 else ''} {_braced(missing)}")
        if unknown:
            problems.append(
                f"uses field{'s' if len(unknown) > 1 else ''} {_braced(unknown)} that {purpose} cannot fill"
            )
        if problems:
            raise ValueError(
                f"Prompt template {self.name!r} ({self.source}) {' and '.join(problems)}. "
                f"{purpose} fills {_braced(required)}; the template has {_braced(self.fields) or 'no fields'}."
            )

    def render(self, **values: object) -> str:
        """The template with every ``{field}`` replaced by ``str(values[field])``; braces in values are kept as is.

        Raises ``ValueError`` naming a field without a value, or a value for a field the template does not have.

        Example:
            >>> load_prompt("generate_random_v1").render(q1="2+{2}?", a1="#### 4").count("2+{2}?")
            1
        """
        missing = [f for f in self.fields if f not in values]
        unknown = [f for f in values if f not in self.fields]
        if missing or unknown:
            what = [f"no value for {_braced(missing)}"] if missing else []
            what += [f"values for {_braced(unknown)}, which it does not use"] if unknown else []
            raise ValueError(
                f"Prompt template {self.name!r}: {' and '.join(what)}. Its fields are {_braced(self.fields)}."
            )
        return _FIELD.sub(lambda m: str(values[m.group(1)]), self.text)


def _braced(names: Iterable[str]) -> str:
    return ", ".join("{" + name + "}" for name in names)


def available_prompts() -> list[str]:
    """Names of the packaged templates.

    Example:
        >>> "generate_embedsdg_v1" in available_prompts()
        True
    """
    return sorted(p.name[: -len(".txt")] for p in resources.files(__name__).iterdir() if p.name.endswith(".txt"))


def load_prompt(name_or_path: str | Path, *, required_fields: Iterable[str] | None = None) -> PromptTemplate:
    """Load a packaged template by name (``"generate_embedsdg_v1"``) or a user's ``.txt`` file by path.

    With ``required_fields``, the template must use exactly those fields (:meth:`PromptTemplate.validate`).

    Example:
        >>> t = load_prompt("generate_embedsdg_v1")
        >>> t.version, t.fields
        ('v1', ('q1', 'a1', 'q2', 'a2', 'interpolated_decoded_text'))
    """
    if isinstance(name_or_path, Path) or not _VERSIONED_NAME.match(str(name_or_path)):
        template = _load_file(Path(name_or_path).expanduser())
    else:
        template = _load_packaged(str(name_or_path))
    if required_fields is not None:
        template.validate(required_fields, purpose=f"a prompt loaded with required_fields={list(required_fields)}")
    return template


def _load_packaged(name: str) -> PromptTemplate:
    resource = resources.files(__name__).joinpath(f"{name}.txt")
    if not resource.is_file():
        if Path(name).is_file():  # a file in the working directory that happens to be called like a packaged name
            return _load_file(Path(name))
        raise ValueError(
            f"No packaged prompt template {name!r}. Available: {available_prompts()}; "
            "or pass the path to your own .txt template."
        )
    text = resource.read_text(encoding="utf-8")
    return PromptTemplate(
        name=name, version=_VERSIONED_NAME.match(name)["version"], text=_drop_final_newline(text), source=str(resource)
    )


def _load_file(path: Path) -> PromptTemplate:
    if not path.is_file():
        raise ValueError(
            f"Prompt template file {str(path)!r} does not exist. Pass an existing .txt file or one of the packaged "
            f"templates: {available_prompts()}."
        )
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"Prompt template file {str(path)!r} is not UTF-8 text ({err}).") from None
    digest = hashlib.sha256(raw).hexdigest()[:12]
    return PromptTemplate(
        name=path.stem,
        version=f"file:{path.stem}@{digest}",
        text=_drop_final_newline(text),
        source=str(path.resolve()),
    )


def _drop_final_newline(text: str) -> str:
    return text[:-1] if text.endswith("\n") else text
