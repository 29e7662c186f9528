"""Hive-Mind inference service: llama.cpp inference with hot-swap."""

__version__ = "0.1.0"
