"""`GET /api/batches/{id}/archive`: where each run of a batch is archived (analytics/archive.py), and
`GET /api/batches/{id}/archive/{run_id}` to download one run's object through MAMS (the store itself may not
be reachable from a browser: a private bucket, a loopback MinIO, a local folder).

The archive is the owner's audit record, with every private number: only the batch's owner (or, for a
shared benchmark batch, any signed-in user, as for the batch itself) can list or read it.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics import archive
from analytics.models import RunArchive
from negotiation.api.batches import batch_or_404
from negotiation.api.common import BinaryRenderer, errors
from negotiation.models import NegotiationRun

TAG = ["batches"]


class ArchiveEntrySerializer(serializers.Serializer):
    run_id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=RunArchive.Status.choices, help_text=(
        "archived: the object is written; pending: queued or retrying; failed: gave up (see error)."))
    url = serializers.CharField(help_text="s3://bucket/key or file:///path of the object ('' until archived).")
    key = serializers.CharField()
    size = serializers.IntegerField(allow_null=True, help_text="Bytes of the gzip object.")
    sha256 = serializers.CharField(help_text="SHA-256 of the object's bytes.")
    attempts = serializers.IntegerField()
    error = serializers.CharField(help_text="The latest write error, in words.")
    archived_at = serializers.DateTimeField(allow_null=True)
    download = serializers.SerializerMethodField()

    def get_download(self, row: RunArchive) -> str | None:
        if row.status != RunArchive.Status.ARCHIVED:
            return None
        return f"/api/batches/{row.batch_id}/archive/{row.run_id}"


class BatchArchiveApi(APIView):
    """Each ended run's archived object, with its size and checksum, or why it is not archived yet."""

    class ArchiveOutput(serializers.Serializer):
        batch_id = serializers.UUIDField()
        store = serializers.CharField(help_text="MAMS_ARCHIVE_URL's store: s3://bucket/prefix or file:///path.")
        store_problem = serializers.CharField(allow_null=True, help_text="Why the store cannot be written, if so.")
        runs_ended = serializers.IntegerField()
        archived = serializers.IntegerField()
        runs = ArchiveEntrySerializer(many=True)

    @extend_schema(tags=TAG, operation_id="batches_archive", responses={200: ArchiveOutput, **errors(401, 404)})
    def get(self, request: Request, batch_id: Any) -> Response:

        batch = batch_or_404(request, batch_id)
        rows = archive.archive_list(batch_id=batch.pk)
        ended = NegotiationRun.objects.filter(batch=batch, status__in=NegotiationRun.TERMINAL).count()
        return Response({
            "batch_id": str(batch.pk), "store": archive.store_label(), "store_problem": archive.store_problem_cached(),
            "runs_ended": ended, "archived": sum(r.status == RunArchive.Status.ARCHIVED for r in rows),
            "runs": ArchiveEntrySerializer(rows, many=True).data})


class RunArchiveDownloadApi(APIView):
    """The archived object of one run (gzip JSON), read from the store."""

    renderer_classes = [JSONRenderer, BinaryRenderer]

    @extend_schema(tags=TAG, operation_id="batches_archive_download",
                   responses={(200, "application/gzip"): OpenApiResponse(OpenApiTypes.BINARY), **errors(401, 404)})
    def get(self, request: Request, batch_id: Any, run_id: Any) -> HttpResponse:
        batch = batch_or_404(request, batch_id)
        row = RunArchive.objects.filter(batch=batch, run_id=run_id, status=RunArchive.Status.ARCHIVED).first()
        if row is None:
            raise NotFound("This run has no archived object (yet).")
        try:
            body = archive.object_get(row.url)
        except Exception as exc:
            raise NotFound(f"The archived object could not be read from the store: {archive.describe(exc)}") from exc
        response = HttpResponse(body, content_type="application/gzip")
        response["Content-Disposition"] = f'attachment; filename="{row.run_id}.json.gz"'
        response["X-Archive-SHA256"] = row.sha256
        return response
