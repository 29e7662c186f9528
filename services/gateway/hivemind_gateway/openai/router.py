"""Routes of the gateway's openai surface."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
