"""API routes of analytics/api/, mounted at /api/ beside negotiation/urls.py (see mams/urls.py)."""

from django.urls import path

from analytics.api import experiments

urlpatterns = [
    path("experiments", experiments.ExperimentsApi.as_view(), name="experiments"),
    path("experiments/<uuid:experiment_id>", experiments.ExperimentApi.as_view(), name="experiment"),
    path("experiments/<uuid:experiment_id>/results", experiments.ExperimentResultsApi.as_view(),
         name="experiment-results"),
    path("sequences", experiments.SequencesApi.as_view(), name="sequences"),
    path("sequences/<uuid:sequence_id>", experiments.SequenceApi.as_view(), name="sequence"),
]
