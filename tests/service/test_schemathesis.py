"""Schemathesis against the OpenAPI document: for generated requests to every operation, no 5xx,
and every answer (status code, content type, body) matches the document. Bounded: 4 examples
per operation, derandomised, so the suite stays fast and repeatable."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis import checks

from microneedling.service.accounts import issue_token
from microneedling.service.db import User, session_scope
from tests.service.helpers import Service, build_service, settings_for

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
]

_state: dict[str, Any] = {}


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[Service]:
    """An API-only app (runs are queued, never executed) with small inline simulations."""
    with tempfile.TemporaryDirectory(prefix="microneedling-fuzz-") as tmp:
        settings = settings_for(Path(tmp), None, job_threads=0, inline_max_draws=2)
        with build_service(settings, "sqlite") as svc:
            # ids 1..40 are spare tokens, so that a generated DELETE /tokens/{small id} does not
            # revoke the token the test signs in with
            with session_scope(svc.ctx.sessions) as db:
                user = db.get(User, svc.a.user_id)
                assert user is not None
                for i in range(40):
                    issue_token(db, user, f"spare {i}")
                _, token = issue_token(db, user, "fuzzing")
            _state["headers"] = {"Authorization": f"Bearer {token}"}
            yield svc


@pytest.fixture(scope="module")
def api_schema(fuzzed: Service) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", fuzzed.app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_api_matches_its_schema(case: Any) -> None:
    case.call_and_validate(headers=_state["headers"], checks=CHECKS)
