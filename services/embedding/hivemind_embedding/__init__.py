"""Hive-Mind embedding service: Batched sentence embeddings."""

__version__ = "0.1.0"
