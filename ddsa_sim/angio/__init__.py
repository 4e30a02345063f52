"""Clinical angiography runs: XA DICOM in and out, conventional DSA, cine pictures, reader studies.

Nothing here needs torch: the network itself is applied by :mod:`ddsa_sim.training.infer`.
"""
