"""Boards: gates, fever cases, ledgers (pages; queries in sync.server.boards)."""

from __future__ import annotations

from fastapi import Request

from sync.server.web.core import StaffPage, page_router, render, site_guard

router = page_router()


@router.get("/sites/{site_id}/gates")
def gates_board(request: Request, site_id: str, staff: StaffPage):
    site_guard(staff, site_id, change=False)
    return render(request, "gates.html", site=site_id, board="gates", gates=[])
