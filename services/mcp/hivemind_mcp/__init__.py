"""Hive-Mind mcp service: MCP bridge for coding assistants."""

__version__ = "0.1.0"
