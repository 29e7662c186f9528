"""Hive-Mind trainer service: Learning loop: collect, filter, LoRA-train, evaluate."""

__version__ = "0.1.0"
