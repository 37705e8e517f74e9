"""Exporters: a device model card → noise models for training and inference simulators."""
