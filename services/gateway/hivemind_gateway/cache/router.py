"""Routes of the gateway's cache surface."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
