"""Progress bars: one switch for the whole library.

Every long loop (training, sweeps, the ODE solver) shows a ``tqdm.auto`` bar unless its
``progress`` argument is False, or it is None and the environment variable ``KADAM_PROGRESS``
is "0" (what the test suite and CI set).
"""

from __future__ import annotations

import os

from kadam_edu import validate

__all__ = ["ENV", "enabled", "bar"]

#: The environment variable that turns the default progress bars off ("0") or on (anything else).
ENV = "KADAM_PROGRESS"


def enabled(progress: bool | None = None) -> bool:
    """``progress`` if it is a bool; None: on unless ``$KADAM_PROGRESS`` is "0"."""
    if progress is None:
        return os.environ.get(ENV, "1") != "0"
    return validate.boolean("progress", progress)


def bar(progress: bool | None, *, total: int | None = None, desc: str = ""):
    """A ``tqdm.auto`` bar (``leave=False``) when :func:`enabled`, else None.

    total: the number of updates expected (None: unknown); desc: the label shown before it.
    Callers guard their ``update``/``close`` calls with ``if bar is not None``.
    """
    if not enabled(progress):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False)
