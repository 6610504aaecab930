"""Early-exit network -> int8 TFLite Micro slices placed on device, edge and cloud tiers."""

__version__ = "0.1.0"
