"""URLs: the admin for configuration, the REST API under /api/ and its docs (login required), the
environment API for external agents under /env/, and the analytics pages under /analytics/ (the site
root goes there)."""

from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from analytics.api.archive import BatchArchiveApi, RunArchiveDownloadApi
from analytics.benchmarks.api import LeaderboardApi, LeaderboardSlashApi
from negotiation.api.not_found import api_not_found

admin.site.site_header = "MAMS — Multi-Agent Marketplace Simulator"
admin.site.site_title = "MAMS admin"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", login_required(SpectacularSwaggerView.as_view(url_name="schema")), name="api-docs"),
    # ReDoc's bundle fetches its logo from the internet whatever its options; Swagger UI (served from the
    # sidecar's static files) documents the same schema offline, so the old ReDoc address leads there.
    path("api/redoc/", RedirectView.as_view(pattern_name="api-docs", permanent=False), name="api-redoc"),
    path("api/leaderboard", LeaderboardApi.as_view(), name="leaderboard"),
    path("api/leaderboard/", LeaderboardSlashApi.as_view(), name="leaderboard-slash"),
    path("api/batches/<uuid:batch_id>/archive", BatchArchiveApi.as_view(), name="batch-archive"),
    path("api/batches/<uuid:batch_id>/archive/<uuid:run_id>", RunArchiveDownloadApi.as_view(),
         name="batch-archive-run"),
    path("api/", include("negotiation.urls")),
    path("api/", include("analytics.api.urls")),  # experiments and sequences (their results are analytics)
    path("env/", include("analytics.api.environment")),  # the environment API for external agents
    re_path(r"^(?:api|env)/", api_not_found),  # any other /api/ or /env/ path: a JSON 404, never an HTML page
    path("analytics/", include("analytics.urls")),
    path("", RedirectView.as_view(pattern_name="analytics:batches", permanent=False)),
]

# Pages (when DEBUG is off, as in production): error pages with the navigation bar.
handler403 = "analytics.views.page_forbidden"
handler404 = "analytics.views.page_not_found"
handler500 = "analytics.views.page_error"
