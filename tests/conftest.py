"""Session-wide test settings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _fftw_wisdom_in_a_temporary_file(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Path]:
    """FFTW plans made by the tests (and their subprocesses) go to a session file,
    not the user's ``~/.cache/tmfast`` (``tmfast.backends._cpu_fft``)."""
    path = tmp_path_factory.mktemp("fftw") / "wisdom.json"
    old = os.environ.get("TMFAST_FFTW_WISDOM")
    os.environ["TMFAST_FFTW_WISDOM"] = str(path)
    yield path
    if old is None:
        os.environ.pop("TMFAST_FFTW_WISDOM", None)
    else:
        os.environ["TMFAST_FFTW_WISDOM"] = old
