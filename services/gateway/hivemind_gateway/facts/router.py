"""Routes of the gateway's facts surface."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
