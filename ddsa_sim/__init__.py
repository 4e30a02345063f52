"""ddsa-sim: a physics-based X-ray / DSA simulator and DDSA trainer.

World coordinates are millimetres in the patient LPS frame (as DICOM and DeepDRR use).
"""

import os

# numba's OpenMP threads otherwise spin for milliseconds after every parallel kernel, holding cores
# the next step needs (the spectrum's threads, the Python between kernels): on a 2-core machine
# that doubled the spectrum time after a march. Set before numba loads OpenMP; a user's value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"


class InputError(ValueError):
    """Bad user input (a file, a field, a pose). Its message is one line naming the culprit."""
