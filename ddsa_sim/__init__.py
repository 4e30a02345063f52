"""ddsa-sim: a physics-based X-ray / DSA simulator and DDSA trainer.

World coordinates are millimetres in the patient LPS frame (as DICOM and DeepDRR use).
"""

__version__ = "0.1.0"


class InputError(ValueError):
    """Bad user input (a file, a field, a pose). Its message is one line naming the culprit."""
