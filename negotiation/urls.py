"""API routes, mounted at /api/ (see mams/urls.py; the experiments and sequences routes are
analytics/api/urls.py). Object ids are UUIDs."""

from django.urls import path

from negotiation.api import batches, health, live, runs, sessions, stream

urlpatterns = [
    path("health", health.HealthApi.as_view(), name="health"),
    path("sessions", sessions.SessionsApi.as_view(), name="sessions"),
    path("sessions/import", sessions.SessionImportApi.as_view(), name="sessions-import"),
    path("sessions/<uuid:session_id>", sessions.SessionApi.as_view(), name="session"),
    path("sessions/<uuid:session_id>/buyer-config", sessions.BuyerConfigApi.as_view(), name="session-buyer-config"),
    path("sessions/<uuid:session_id>/sellers", sessions.SellersApi.as_view(), name="session-sellers"),
    path("sessions/<uuid:session_id>/sellers/<uuid:seller_id>", sessions.SellerApi.as_view(), name="session-seller"),
    path("sessions/<uuid:session_id>/export", sessions.SessionExportApi.as_view(), name="session-export"),
    path("batches", batches.BatchesApi.as_view(), name="batches"),
    path("batches/<uuid:batch_id>", batches.BatchApi.as_view(), name="batch"),
    path("batches/<uuid:batch_id>/cancel", batches.BatchCancelApi.as_view(), name="batch-cancel"),
    path("batches/<uuid:batch_id>/results.csv", batches.BatchResultsCsvApi.as_view(), name="batch-results-csv"),
    path("batches/<uuid:batch_id>/results.jsonl", batches.BatchResultsJsonlApi.as_view(),
         name="batch-results-jsonl"),
    path("negotiations", runs.RunsApi.as_view(), name="negotiations"),
    path("negotiations/start", live.LiveStartApi.as_view(), name="negotiation-start"),
    path("negotiations/<uuid:run_id>", runs.RunApi.as_view(), name="negotiation"),
    path("negotiations/<uuid:run_id>/messages", runs.RunMessagesApi.as_view(), name="negotiation-messages"),
    path("negotiations/<uuid:run_id>/messages/<uuid:message_id>/audio", runs.RunMessageAudioApi.as_view(),
         name="negotiation-message-audio"),
    path("negotiations/<uuid:run_id>/analytics", runs.RunAnalyticsApi.as_view(), name="negotiation-analytics"),
    path("negotiations/<uuid:run_id>/message", live.LiveMessageApi.as_view(), name="negotiation-message"),
    path("negotiations/<uuid:run_id>/decide", live.LiveDecideApi.as_view(), name="negotiation-decide"),
    path("negotiations/<uuid:run_id>/stream", stream.RunStreamApi.as_view(), name="negotiation-stream"),
]
