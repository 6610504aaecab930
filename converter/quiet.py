"""Keep TensorFlow's, absl's, MLIR's and onnx2tf's own logging off the console unless ``--verbose``.

``TF_CPP_MIN_LOG_LEVEL`` silences only part of it: absl's C++ logging before ``InitializeLog``
(CUDA/cuDNN factory registration), the converter's MLIR passes and ``fully_quantize`` lines
write to file descriptor 2 directly, so :func:`silenced` points descriptors 1 and 2 elsewhere
while TensorFlow is imported and while it converts.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from collections.abc import Iterator
from typing import IO

_verbose = False


def set_verbose(verbose: bool) -> None:
    """``--verbose``: let every library's log through."""
    global _verbose
    _verbose = verbose


@contextlib.contextmanager
def descriptors_to(target: IO, fds: tuple[int, ...] = (1, 2)) -> Iterator[None]:
    """Point the C-level file descriptors ``fds`` at ``target`` inside the block."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in fds]
    try:
        for fd in fds:
            os.dup2(target.fileno(), fd)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in zip(fds, saved):
            os.dup2(copy, fd)
            os.close(copy)


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """Inside the block, nothing reaches the console (C or Python level), unless ``--verbose``."""
    if _verbose:
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # read when TensorFlow is imported
    for name in ("tensorflow", "absl"):  # their Python loggers, also for anything logged later
        logging.getLogger(name).setLevel(logging.ERROR)
    with (
        open(os.devnull, "w") as null,
        descriptors_to(null),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        yield
