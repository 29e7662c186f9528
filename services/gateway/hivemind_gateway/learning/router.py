"""Routes of the gateway's learning surface."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
