"""Routes of the gateway's rag surface."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
