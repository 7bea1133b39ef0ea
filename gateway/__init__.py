"""The checkpoint on the device: config, passes, thermometry, decisions, journal, loop."""

__version__ = "0.1.0"
