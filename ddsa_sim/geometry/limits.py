"""C-arm angle limits (DeepDRR ``MobileCArm``), in degrees: the one place they are written.

A module without numpy or killeengeo, so a config can be validated against the limits without
importing the geometry machinery.
"""

__all__ = ["ALPHA_LIMITS_DEG", "BETA_LIMITS_DEG"]

#: orbital rotation ``alpha``: (min, max) in degrees
ALPHA_LIMITS_DEG: tuple[float, float] = (-40.0, 110.0)
#: angular rotation ``beta``: (min, max) in degrees
BETA_LIMITS_DEG: tuple[float, float] = (-225.0, 225.0)
