"""The edge side: serial protocol, bridge, cloud tier, device simulator."""

__version__ = "0.1.0"
