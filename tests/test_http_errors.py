"""fsapps.server.http_errors: an error's HTTP answer by its type, so a subclass answers as
its parent does (the routes' own answers are in test_cti_api and test_csta_protocol)."""

from __future__ import annotations

import pytest

from fsapps.db.connection import DatabaseUnavailableError
from fsapps.errors import (
    BadInput,
    ConfigError,
    DatabaseError,
    FsappsError,
    MigrationError,
    StoreUnavailable,
)
from fsapps.server.auth import Forbidden, NotAuthorized, Throttled
from fsapps.server.csta.rest import CstaError
from fsapps.server.http_errors import http_error, status_of
from fsapps.server.registry import ApiError
from fsapps.services.agents import AgentDisabled, NotAnAgent
from fsapps.switch.nodecommands import NodeDidNotAnswer, NoLiveNode, NoSuchChannel


@pytest.mark.parametrize(("error", "status"), [
    (DatabaseUnavailableError("PostgreSQL down"), 503),
    (MigrationError("bad migration"), 503),
    (DatabaseError("refused"), 503),
    (StoreUnavailable("Redis down"), 503),
    (NoSuchChannel("u1"), 404),
    (NotAnAgent("1000"), 404),
    (AgentDisabled("1000"), 409),
    (NoLiveNode(), 503),
    (NodeDidNotAnswer("n1", 0.5, "u1"), 504),
    (BadInput("x"), 400),
    (ConfigError("a.b", 1, "no"), 500),
    (FsappsError("refused"), 409),
    (ApiError(422, "bad", "Field"), 422),
    (CstaError(404, "no call", "callId"), 404),
    (NotAuthorized("who?"), 401),
    (Forbidden("no"), 403),
    (Throttled("slow down", 7), 429),
])
def test_status_by_type(error: FsappsError, status: int) -> None:
    assert status_of(error) == status


def test_answers() -> None:
    assert http_error(DatabaseUnavailableError("PostgreSQL down")).message == \
        "service unavailable: PostgreSQL down"
    # a node error says its own status: its text is the message as it is
    late = http_error(NodeDidNotAnswer("n1", 0.5, "u1"))
    assert (late.status, late.message) == (504, "node n1 holding u1 did not answer within "
                                                "0.5 s (the command may still run there)")
    assert http_error(Throttled("slow down", 7)).headers == {"Retry-After": "7"}
    assert http_error(NotAuthorized("who?")).headers == {
        "WWW-Authenticate": 'Nway realm="fsapps"'}
    assert http_error(ApiError(422, "bad", "Field")).field == "Field"
