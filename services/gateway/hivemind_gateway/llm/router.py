"""Routes of the gateway's llm surface."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
