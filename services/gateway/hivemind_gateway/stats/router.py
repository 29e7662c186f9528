"""Routes of the gateway's stats surface."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
