"""syncsim: device-side sync simulator and load tester for offline-first apps."""

__version__ = "0.1.0"
