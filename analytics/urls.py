"""Analytics pages, mounted at /analytics/ (see mams/urls.py)."""

from django.urls import path

from analytics import research_views, views
from analytics.benchmarks.views import leaderboard_page, replication_page

app_name = "analytics"
urlpatterns = [
    path("", views.batch_list, name="batches"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("batches/<uuid:batch_id>/", views.batch_detail, name="batch"),
    path("batches/<uuid:batch_id>/live.json", views.batch_live, name="batch-live"),
    path("batches/<uuid:batch_id>/cancel/", views.batch_cancel, name="batch-cancel"),
    path("runs/<uuid:run_id>/", views.run_detail, name="run"),
    path("compare/", views.compare, name="compare"),
    path("leaderboard/", leaderboard_page, name="leaderboard"),
    path("replications/<uuid:benchmark_id>/", replication_page, name="replication"),
    path("sessions/", views.session_list, name="sessions"),
    path("sessions/<uuid:session_id>/", views.session_detail, name="session"),
    path("experiments/", research_views.experiments, name="experiments"),
    path("experiments/<uuid:experiment_id>/", research_views.experiment_detail, name="experiment"),
    path("sequences/", research_views.sequences, name="sequences"),
    path("sequences/<uuid:sequence_id>/", research_views.sequence_detail, name="sequence"),
]
