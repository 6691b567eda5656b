"""Schema fuzzing of the REST API: every documented operation, fed schemathesis-generated requests.

For a staff user and for a partner user (token authentication), each operation of the OpenAPI schema
served at /api/schema/ gets a few dozen generated requests, many of them carrying the world's real ids
and slugs, plus a few explicit requests at the edges of the calendar and of the integers. Every answer
must be no server error, have a status the API gives by design, and a content type and body that
conform to the schema. Requests go in-process to the Django WSGI app, each rolled back to a savepoint.
Repeatable: a fixed seed per operation and user, and no Hypothesis database.
"""

import traceback
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import got_request_exception, request_finished, request_started
from django.db import close_old_connections, transaction
from django.test import Client
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance
from schemathesis.core.failures import FailureGroup

from connectors.models import ToolConnection
from metrics.services import product_rollups_rebuild
from tests.factories import build_scope_world, flow_item
from vsm.choices import FlowState
from vsm.models import Artifact, ArtifactLink, Product

pytestmark = pytest.mark.django_db

USER_KINDS = ["staff", "partner_user"]
EXAMPLES_PER_OPERATION = 40
BASE_URL = "http://testserver"  # a host the test settings allow

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    database=None,
    deadline=None,
    print_blob=False,
    # No explain phase: it re-runs a failing example under a tracer, slow and of no use to this report.
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)

# status_code_conformance is left out: the schema documents only 200, while the API answers 400 for
# input its serializers and FilterSets reject and 404 for unknown and out-of-reach ids and products
# (404 rather than 403, so other products' ids are not revealed). STATUSES_BY_DESIGN checks that instead.
STATUSES_BY_DESIGN = {200, 400, 404}
SERVER_ERROR_CHECKS = [not_a_server_error]
# A body that does not conform is recorded, not raised: raised, it would end the operation's run at the
# first example (say a null the schema does not allow, in every list) and hide the server errors after it.
CONFORMANCE_CHECKS = [content_type_conformance, response_schema_conformance]

# Explicit requests at the edges, per parameter format: generation reaches them only now and then.
EDGE_VALUES = {
    "date": ["0001-01-01", "9999-12-31"],
    "date-time": ["0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59"],
    "integer": [2**63 - 1],
    # A digit to str.isdigit() that int() refuses.
    "id or slug": ["²"],
}

# The scope world's items are all new or in progress; these, done in January 2026, give the metrics
# (the forecast above all, which refuses an empty history) something to compute.
DONE_ITEMS = [  # key, product, connection, team, day of January it started, days to done
    ("DONE-A-1", "product", "partner_conn", "partner_team", 6, 2),
    ("DONE-A-2", "product", "partner_conn", None, 9, 5),
    ("DONE-INTERNAL", "product", "internal_conn", "internal_team", 12, 3),
    ("DONE-OTHER", "other_product", "other_product_conn", "other_product_team", 7, 4),
]
FORECAST_HISTORY = {"history_start": "2026-01-01", "history_end": "2026-01-31", "start": "2026-02-01"}


@pytest.fixture
def world():
    world = build_scope_world()
    for key, product, connection, team, started, days_to_done in DONE_ITEMS:
        started_at = datetime(2026, 1, started, 9, tzinfo=UTC)
        flow_item(
            getattr(world, product),
            (started_at, FlowState.ACTIVE),
            (started_at + timedelta(days=days_to_done), FlowState.DONE),
            created_at=started_at - timedelta(days=1),
            key=key,
            connection=getattr(world, connection),
            team=getattr(world, team) if team else None,
        )
    for product in Product.objects.all():
        product_rollups_rebuild(product)
    return world


@contextmanager
def requests_inside_the_test_transaction() -> Iterator[None]:
    """Keep Django's request signals from closing the test's connection, as django.test.Client does."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@contextmanager
def server_errors_recorded() -> Iterator[list[str]]:
    """The exceptions views raise (each a 500 to the client), so a failure can say what went wrong."""
    recorded: list[str] = []

    def record(sender, **kwargs):
        recorded.append(traceback.format_exc(limit=-3))

    got_request_exception.connect(record, weak=False)
    try:
        yield recorded
    finally:
        got_request_exception.disconnect(record)


def token_header(user) -> dict[str, str]:
    return {"Authorization": f"Token {Token.objects.create(user=user).key}"}


def load_schema(headers: dict[str, str]):
    """The schema as this user is served it (authenticated: the schema endpoint is to require a login)."""
    response = Client().get("/api/schema/", {"format": "json"}, headers=headers)
    assert response.status_code == 200, response.content
    schema = schemathesis.openapi.from_dict(response.json())
    schema.app = WSGIHandler()
    return schema


def is_metrics(operation) -> bool:
    return operation.path.startswith("/api/metrics/")


def route_of(operation) -> str:
    """The list route of a detail operation: /api/artifacts/ for /api/artifacts/{id}/transitions/."""
    return operation.path.split("{id}/")[0]


def real_values(world) -> dict[str, list]:
    """The world's ids and slugs, per path (detail routes) or query parameter, in reach or not."""
    products = [world.product.pk, world.other_product.pk]
    return {
        "/api/products/": products,
        "/api/teams/": [world.internal_team.pk, world.partner_team.pk, world.other_product_team.pk],
        "/api/artifacts/": list(Artifact.objects.values_list("pk", flat=True)),
        "/api/links/": list(ArtifactLink.objects.values_list("pk", flat=True)),
        "/api/connections/": list(ToolConnection.objects.values_list("pk", flat=True)),
        "product": products,
        # /api/metrics/ takes a product id or slug, as a string.
        "metrics product": ["granted", "other", str(world.product.pk)],
        "partner": [world.partner.pk, world.other_partner.pk],
        "team": [world.partner_team.pk, world.other_product_team.pk],
        "connection": [world.partner_conn.pk, world.internal_conn.pk],
        "artifact": [world.artifacts["A-OWN-CONN"].pk, world.artifacts["OTHER"].pk],
        "source": [world.artifacts["A-OWN-CONN"].pk],
        "target": [world.artifacts["A-OWN-TEAM"].pk],
    }


def queries_that_reach_the_view(operation, world) -> list[dict]:
    """Query parameters the view needs together, which generation alone seldom combines."""
    if not is_metrics(operation):
        return [{}]
    if operation.path == "/api/metrics/forecast/":
        # Exactly one of items and until, after a history with done items.
        return [{**FORECAST_HISTORY, "items": 5}, {**FORECAST_HISTORY, "until": "2026-03-01"}]
    return [{"product": world.product.slug}]


def real_value_overrides(operation, world) -> list[dict]:
    """as_strategy() arguments that fix an id or the product to the world's, the rest generated."""
    values = real_values(world)
    overrides: list[dict] = []
    if "id" in operation.path_parameters:
        overrides += [{"path_parameters": {"id": pk}} for pk in values[route_of(operation)]]
    products = values["metrics product"] if is_metrics(operation) else values["product"]
    needed = queries_that_reach_the_view(operation, world)
    if "product" in operation.query:
        overrides += [{"query": {**query, "product": p}} for p in products for query in needed]
    for name in ("team", "partner", "connection", "artifact", "source", "target"):
        if name in operation.query:
            # On /api/metrics/, a narrowing within a random (so unknown) product would tell nothing.
            within = {**needed[0], "product": products[0]} if is_metrics(operation) else {}
            overrides += [{"query": {**within, name: value}} for value in values[name]]
    return overrides


def edge_cases(operation, world, headers) -> list:
    """One request per parameter and edge value, the others set so the view gets to read it."""
    path_parameters = {"id": real_values(world)[route_of(operation)][0]} if operation.path_parameters else {}
    base = queries_that_reach_the_view(operation, world)[0]
    cases = []
    for parameter in operation.query:
        schema = parameter.definition["schema"]
        kind = schema.get("format", schema.get("type"))
        if parameter.name == "product" and is_metrics(operation):
            kind = "id or slug"
        if kind == "int64":
            kind = "integer"
        for value in EDGE_VALUES.get(kind, []):
            query = {**base, parameter.name: value}
            cases.append(operation.Case(path_parameters=path_parameters, query=query, headers=headers))
    return cases


def check_answer(case, statuses_seen: set[int], nonconforming: dict[str, str]) -> None:
    """Send the case: raise on a server error or a status not by design, record a body not as documented."""
    savepoint = transaction.savepoint()
    try:
        with server_errors_recorded() as server_errors:
            response = case.call(base_url=BASE_URL)
    finally:
        transaction.savepoint_rollback(savepoint)
    statuses_seen.add(response.status_code)
    try:
        case.validate_response(response, checks=SERVER_ERROR_CHECKS)
        assert response.status_code in STATUSES_BY_DESIGN, (
            f"{response.status_code} is not a status by design: {response.text[:300]}\n"
            f"{case.as_curl_command()}"
        )
    except (Exception, BaseExceptionGroup) as failure:
        for error in server_errors:
            failure.add_note(error)
        raise
    try:
        case.validate_response(response, checks=CONFORMANCE_CHECKS)
    except FailureGroup as group:
        for failure in group.exceptions:
            nonconforming.setdefault(f"{failure.title}: {failure.message}", case.as_curl_command())


def described(failure: BaseException) -> str:
    """The failure's message (with its request, for schemathesis's), then its notes: the server's error,
    and Hypothesis's falsifying example."""
    return "\n".join([f"{type(failure).__name__}: {failure}", *getattr(failure, "__notes__", [])])


def add_failure(failures: dict[str, str], failure: BaseException) -> None:
    """Keep one failure per distinct server error (its traceback, added as a note), else per message."""
    failures.setdefault("".join(getattr(failure, "__notes__", [])) or str(failure), described(failure))


def failures_of_operation(operation, world, headers, user_kind) -> list[str]:
    """The operation's edge cases and generated examples: the server errors, each generated one shrunk,
    then the answers not as documented."""
    statuses_seen: set[int] = set()
    nonconforming: dict[str, str] = {}  # failure -> the first request that showed it
    failures: dict[str, str] = {}  # the server's error (or the failure) -> the failure described

    for case in edge_cases(operation, world, headers):
        try:
            check_answer(case, statuses_seen, nonconforming)
        except (Exception, BaseExceptionGroup) as failure:
            add_failure(failures, failure)

    overrides = [{}, *real_value_overrides(operation, world)]  # {}: every parameter generated
    strategies = [operation.as_strategy(headers=headers, **override) for override in overrides]

    # A seed of its own per user and operation (derandomize would give every operation the same one).
    @seed(zlib.crc32(f"{user_kind} {operation.label}".encode()))
    @FUZZ_SETTINGS
    @given(case=st.one_of(strategies))
    def answers_as_designed(case):
        check_answer(case, statuses_seen, nonconforming)

    try:
        answers_as_designed()
    # Schemathesis raises its checks' failures as an exception group.
    except (Exception, BaseExceptionGroup) as failure:
        add_failure(failures, failure)
    if 200 not in statuses_seen:
        # Else the fuzzing proves nothing of the view: every request stopped at its validation.
        failures["no 200"] = f"never answered 200, only {sorted(statuses_seen)}"
    return [
        *failures.values(),
        *(f"{failure}\n    {curl}" for failure, curl in sorted(nonconforming.items())),
    ]


@pytest.mark.parametrize("user_kind", USER_KINDS)
def test_every_operation_answers_without_server_error_and_as_documented(world, user_kind):
    headers = token_header(getattr(world, user_kind))
    schema = load_schema(headers)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 17, [operation.label for operation in operations]
    failures = []
    with requests_inside_the_test_transaction():
        for operation in operations:
            found = failures_of_operation(operation, world, headers, user_kind)
            failures += [f"=== {operation.label}: {failure}" for failure in found]
    if failures:
        report = "\n\n".join(failures)
        pytest.fail(f"{len(failures)} failures in {len(operations)} operations:\n\n{report}", pytrace=False)
