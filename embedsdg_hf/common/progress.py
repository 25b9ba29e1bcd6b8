"""Progress bars: one per stage by default, the library's bookkeeping (saving, JSON export, filters that pick rows,
loading weights) silent unless the log is at INFO (``embedsdg -v``).

:func:`quiet_progress` turns ``datasets``' and ``transformers``' own progress-bar switches off for a block and puts
each back as it was, so a caller who disabled or enabled them keeps their choice.

Example:
    >>> import datasets
    >>> with quiet_progress():
    ...     rows = datasets.Dataset.from_dict({"x": [1, 2]}).filter(lambda r: r["x"] > 1)  # no bar
    >>> len(rows)
    1
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["quiet_progress"]


@contextmanager
def quiet_progress() -> Iterator[None]:
    """No ``datasets`` / ``transformers`` progress bars inside the block, unless ``embedsdg_hf`` logs at INFO; both
    switches are restored on the way out (errors included)."""
    if logging.getLogger("embedsdg_hf").isEnabledFor(logging.INFO):
        yield
        return
    import datasets
    from transformers.utils import logging as hf_logging

    datasets_were_on = not datasets.are_progress_bars_disabled()
    transformers_were_on = hf_logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if datasets_were_on:
            datasets.enable_progress_bars()
        if transformers_were_on:
            hf_logging.enable_progress_bar()
