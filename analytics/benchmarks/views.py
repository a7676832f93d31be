"""The leaderboard page, /analytics/leaderboard/ (behind the analytics sign-in like every page)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from analytics.benchmarks.leaderboard import COLUMNS, DEFAULT_SORT, LeaderboardError, leaderboard
from analytics.views import login_required


@login_required
def leaderboard_page(request: HttpRequest) -> HttpResponse:
    q = {k: request.GET.get(k, "") for k in ("suite", "sort", "opponent")}
    try:
        data = leaderboard(user=request.user, suite=q["suite"] or None, sort=q["sort"] or DEFAULT_SORT,
                           opponent=q["opponent"])
        error = ""
    except LeaderboardError as exc:
        data, error = None, str(exc)
    key = (data["sort"] if data else DEFAULT_SORT)
    ctx = {"d": data, "error": error, "q": q, "columns": COLUMNS, "sort_key": key.lstrip("-"),
           "sort_desc": key.startswith("-")}
    return render(request, "analytics/leaderboard.html", ctx, status=400 if error else 200)
