"""Placeholder until filled."""

from sync.server.web.core import page_router

router = page_router()
