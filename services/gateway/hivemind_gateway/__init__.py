"""Hive-Mind gateway service: OpenAI-compatible gateway, memory and retrieval API."""

__version__ = "0.1.0"
