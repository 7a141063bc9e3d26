"""Helpers of the team server tests."""

from __future__ import annotations

import httpx


def client(url: str, token: str | None = None) -> httpx.Client:
    """An HTTP client of the server, with a bearer token when given."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, headers=headers, timeout=30)
