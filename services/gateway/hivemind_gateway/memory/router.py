"""Routes of the gateway's memory surface."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
