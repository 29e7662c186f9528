"""Routes of the gateway's models surface."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
