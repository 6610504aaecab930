"""Early-exit networks: architectures, data, joint training, per-exit evaluation and traces."""

__version__ = "0.1.0"
