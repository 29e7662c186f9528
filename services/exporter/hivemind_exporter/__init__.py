"""Hive-Mind exporter service: GGUF export and validation of trained versions."""

__version__ = "0.1.0"
