"""devmodel: hardware-in-the-loop calibration and device modelling for analog in-memory computing."""

__version__ = "0.1.0"
