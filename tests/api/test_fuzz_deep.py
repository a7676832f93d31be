"""`make fuzz`: schemathesis at a larger budget than the smoke test, and no request leaves partial rows.

Same schema, operations, real ids and WSGI set-up as tests/api/test_schema_fuzz.py; each operation
gets MAMS_FUZZ_EXAMPLES cases (the module is skipped without it, so `make test` stays fast). After
every case the database must be whole: no batch without its runs, no run of a batch beyond what it
asked for, no finished run without its outcome, no seller of a session without that session.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from django.db import connection

from tests.api.test_schema_fuzz import OPERATIONS, fuzz_operation, real_ids, wsgi  # noqa: F401 - fixtures

EXAMPLES = int(os.environ.get("MAMS_FUZZ_EXAMPLES", "0") or 0)
pytestmark = pytest.mark.skipif(not EXAMPLES, reason="set MAMS_FUZZ_EXAMPLES (make fuzz)")

# Each query counts rows that only a half-applied request could leave behind.
PARTIAL_ROWS = {
    "a batch without runs": "SELECT count(*) FROM negotiation_batch b WHERE NOT EXISTS "
                            "(SELECT 1 FROM negotiation_negotiationrun r WHERE r.batch_id = b.id)",
    "a batch whose run count is not a multiple of the runs it asked for":
        "SELECT count(*) FROM negotiation_batch b WHERE (SELECT count(*) FROM negotiation_negotiationrun r "
        "WHERE r.batch_id = b.id) % b.runs_requested <> 0",
    "a completed run without an outcome": "SELECT count(*) FROM negotiation_negotiationrun r WHERE "
                                          "r.status = 'completed' AND NOT EXISTS "
                                          "(SELECT 1 FROM negotiation_outcome o WHERE o.run_id = r.id)",
    "an outcome of a run that is not completed": "SELECT count(*) FROM negotiation_outcome o JOIN "
                                                 "negotiation_negotiationrun r ON r.id = o.run_id "
                                                 "WHERE r.status <> 'completed'",
}


def partial_rows() -> dict[str, int]:
    found = {}
    with connection.cursor() as cur:
        for what, sql in PARTIAL_ROWS.items():
            cur.execute(sql)
            if n := cur.fetchone()[0]:
                found[what] = n
    return found


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_no_operation_answers_5xx_or_leaves_partial_rows(label: str, wsgi: None, user: Any,  # noqa: F811
                                                         real_ids: dict[str, str]) -> None:  # noqa: F811
    assert partial_rows() == {}

    def whole(case: Any, response: Any) -> None:
        assert partial_rows() == {}, (case.method, case.path, case.body, response.status_code)

    assert fuzz_operation(label, user=user, real_ids=real_ids, examples=EXAMPLES, after_each=whole)
