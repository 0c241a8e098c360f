"""What every side of the federation shares: task, data, model, metrics, settings."""

__version__ = "0.1.0"
