"""Webhooks: /hooks/<connection id>/ verifies each tool's signature over the raw body, records each
delivery once, and re-reads the items it names from the tool (here, the in-process fakes)."""

import base64
import hashlib
import hmac
import io
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client, RequestFactory
from django.urls import reverse

from connectors import selectors, services, tasks
from connectors.base import WEBHOOK_CREDENTIAL, connector_for
from connectors.models import RawRecord, Scope, SyncError, SyncRun, ToolConnection, WebhookDelivery
from connectors.providers.github import webhooks as github_webhooks
from connectors.providers.gitlab import webhooks as gitlab_webhooks
from connectors.providers.jira import webhooks as jira_webhooks
from connectors.providers.zendesk import webhooks as zendesk_webhooks
from connectors.views import webhook_receive_view
from connectors.webhooks import MAX_BODY_BYTES
from tests.connectors.conftest import make_jira_world
from tests.connectors.providers.test_github import REPO
from tests.connectors.providers.test_github import make_world as make_github_world
from tests.connectors.providers.test_gitlab import PROJECT
from tests.connectors.providers.test_gitlab import make_world as make_gitlab_world
from tests.connectors.providers.test_zendesk import make_world as make_zendesk_world
from tests.factories import ScopeFactory, StaffFactory, ToolConnectionFactory
from vsm.models import Artifact

pytestmark = pytest.mark.django_db

SECRET = "hook-SECRET-never-shown-4f2a"
GITHUB_VECTOR = (
    "It's a Secret to Everybody",
    b"Hello, World!",
    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
)
ZENDESK_VECTOR = (
    "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ==",
    "2024-04-17T17:18:10Z",
    b'{"ticket_id":"1"}',
    "ZXrtuAlq5iE5Lus8KjgmpxeuMp09dAxN2rB+AoMj+2w=",
)
TOOLS = ["jira", "github", "gitlab", "zendesk"]


def hex_hmac(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class Hooked:
    """A tool world whose connection has a webhook secret, one item in the fake, and how the tool
    would deliver a change of that item."""

    tool: str
    world: Any
    key: str
    payload: dict
    sign: Callable[[bytes, str], dict[str, str]]  # body, secret -> the tool's headers, signature included
    signature_header: str
    delivery_header: str

    @property
    def connection(self) -> ToolConnection:
        return self.world.connection

    @property
    def url(self) -> str:
        return hook_url(self.connection.pk)

    def body(self, **changes) -> bytes:
        return json.dumps({**self.payload, **changes}).encode()

    def headers(self, body: bytes, *, secret: str = SECRET, delivery: str | None = None) -> dict[str, str]:
        headers = self.sign(body, secret)
        headers[self.delivery_header] = delivery or str(uuid.uuid4())
        return headers

    def transport(self):
        return self.world.transport


def jira_hooked() -> Hooked:
    world = make_jira_world("cloud")
    key = world.story("Pushed by a webhook", hours_ago=2)
    return Hooked(
        "jira",
        world,
        key,
        {"timestamp": 1772441000000, "webhookEvent": "jira:issue_updated", "issue": {"id": "1", "key": key}},
        lambda body, secret: {"X-Hub-Signature": f"sha256={hex_hmac(secret, body)}"},
        "X-Hub-Signature",
        "X-Atlassian-Webhook-Identifier",
    )


def github_hooked() -> Hooked:
    world = make_github_world()
    key = world.fake.add_issue(REPO, "Pushed by a webhook", created=world.ago(hours=2))
    number = int(key.rpartition("#")[2])
    return Hooked(
        "github",
        world,
        key,
        {"action": "edited", "issue": {"number": number}, "repository": {"full_name": REPO}},
        lambda body, secret: {
            "X-Hub-Signature-256": f"sha256={hex_hmac(secret, body)}",
            "X-GitHub-Event": "issues",
        },
        "X-Hub-Signature-256",
        "X-GitHub-Delivery",
    )


def gitlab_hooked() -> Hooked:
    world = make_gitlab_world()
    issue = world.issue("Pushed by a webhook", hours_ago=2)
    return Hooked(
        "gitlab",
        world,
        f"{PROJECT}#{issue.iid}",
        {
            "object_kind": "issue",
            "event_type": "issue",
            "project": {"path_with_namespace": PROJECT},
            "object_attributes": {"iid": issue.iid, "action": "update"},
        },
        lambda body, secret: {"X-Gitlab-Token": secret, "X-Gitlab-Event": "Issue Hook"},
        "X-Gitlab-Token",
        "Idempotency-Key",
    )


def zendesk_sign(body: bytes, secret: str) -> dict[str, str]:
    timestamp = "2026-03-02T09:00:00Z"
    digest = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return {
        "X-Zendesk-Webhook-Signature": base64.b64encode(digest).decode(),
        "X-Zendesk-Webhook-Signature-Timestamp": timestamp,
        "X-Zendesk-Webhook-Id": "01F1KRFQ6BG29CNWFR60NK5FNY",  # the webhook's: the same every time
    }


def zendesk_hooked() -> Hooked:
    world = make_zendesk_world()
    ticket = world.ticket("Pushed by a webhook", hours_ago=2)
    return Hooked(
        "zendesk",
        world,
        f"#{ticket}",
        {
            "type": "zen:event-type:ticket.status_changed",
            "account_id": 1,
            "id": "event-1",
            "time": "2026-03-02T09:00:00Z",
            "subject": f"zen:ticket:{ticket}",
            "detail": {"id": str(ticket)},
        },
        zendesk_sign,
        "X-Zendesk-Webhook-Signature",
        "X-Zendesk-Webhook-Invocation-Id",
    )


BUILDERS = {"jira": jira_hooked, "github": github_hooked, "gitlab": gitlab_hooked, "zendesk": zendesk_hooked}


def with_secret(hooked: Hooked, secret: str | None = SECRET) -> Hooked:
    connection = hooked.connection
    credentials = dict(connection.credentials)
    if secret is None:
        credentials.pop(WEBHOOK_CREDENTIAL, None)
    else:
        credentials[WEBHOOK_CREDENTIAL] = secret
    connection.credentials = credentials
    connection.save(update_fields=["credentials"])
    return hooked


@pytest.fixture(params=TOOLS)
def hooked(request) -> Hooked:
    return with_secret(BUILDERS[request.param]())


@pytest.fixture
def jira_hook() -> Hooked:
    return with_secret(jira_hooked())


@pytest.fixture
def through_the_fake(monkeypatch):
    """The service builds its connector from the connection; here it reaches the world's fake."""
    worlds: list[Hooked] = []

    def connector_instance(connection, *, transport=None, sleep=None):
        hooked = next(h for h in worlds if h.connection.pk == connection.pk)
        return selectors.connector_instance(connection, transport=hooked.transport(), sleep=lambda _: None)

    monkeypatch.setattr(services, "connector_instance", connector_instance)
    return worlds.append


@pytest.fixture
def queued(monkeypatch) -> list[int]:
    """The deliveries enqueued, instead of running them."""
    ids: list[int] = []
    monkeypatch.setattr(tasks.webhook_delivery_task, "delay", ids.append)
    return ids


def hook_url(connection_id: int) -> str:
    return reverse("connectors:webhook", args=[connection_id])


def post(client, hooked: Hooked, body: bytes, headers: dict[str, str]):
    return client.post(hooked.url, data=body, content_type="application/json", headers=headers)


def store_state() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (WebhookDelivery, SyncRun, SyncError, RawRecord, Artifact)
    }


# The signature checks, with the published vectors -----------------------------------------------------


def test_githubs_published_vector_verifies_and_a_one_byte_change_does_not():
    secret, body, signature = GITHUB_VECTOR
    github = connector_for("github")
    assert github.verify_webhook({"X-Hub-Signature-256": signature}, body, secret)
    assert github.verify_webhook({"x-hub-signature-256": signature}, body, secret)  # any header case
    assert not github.verify_webhook({"X-Hub-Signature-256": signature}, b"Hello, World?", secret)
    assert not github.verify_webhook({"X-Hub-Signature-256": signature[:-1] + "f"}, body, secret)
    assert not github.verify_webhook({"X-Hub-Signature-256": signature}, body, secret + "!")
    assert not github.verify_webhook({"X-Hub-Signature-256": signature.removeprefix("sha256=")}, body, secret)
    assert not github.verify_webhook({}, body, secret)


def test_zendesks_vector_signs_the_timestamp_then_the_body():
    secret, timestamp, body, signature = ZENDESK_VECTOR
    headers = {"X-Zendesk-Webhook-Signature": signature, "X-Zendesk-Webhook-Signature-Timestamp": timestamp}
    zendesk = connector_for("zendesk")
    assert zendesk.verify_webhook(headers, body, secret)
    assert not zendesk.verify_webhook(headers, body.replace(b"1", b"2"), secret)
    later = {**headers, "X-Zendesk-Webhook-Signature-Timestamp": "2024-04-17T17:18:11Z"}
    assert not zendesk.verify_webhook(later, body, secret)


def test_jira_signs_websub_style_and_gitlab_sends_its_token():
    body = b'{"webhookEvent":"jira:issue_updated"}'
    jira, gitlab = connector_for("jira"), connector_for("gitlab")
    assert jira.verify_webhook({"X-Hub-Signature": f"sha256={hex_hmac('s3', body)}"}, body, "s3")
    assert not jira.verify_webhook({"X-Hub-Signature": f"sha256={hex_hmac('s3', body)}"}, body + b" ", "s3")
    assert not jira.verify_webhook({"X-Hub-Signature": f"sha1={hex_hmac('s3', body)}"}, body, "s3")
    assert gitlab.verify_webhook({"X-Gitlab-Token": "s3"}, body, "s3")
    assert not gitlab.verify_webhook({"X-Gitlab-Token": "s4"}, body, "s3")
    assert not gitlab.verify_webhook({"X-Gitlab-Token": ""}, body, "")


def test_no_provider_verifies_anything_without_a_secret():
    body = b"{}"
    assert not connector_for("github").verify_webhook({"X-Hub-Signature-256": "sha256="}, body, "")
    assert not connector_for("jira").verify_webhook({"X-Hub-Signature": "sha256="}, body, "")
    assert not connector_for("zendesk").verify_webhook(
        {"X-Zendesk-Webhook-Signature": "x", "X-Zendesk-Webhook-Signature-Timestamp": "t"}, body, ""
    )


# What each tool's payload asks to read again ----------------------------------------------------------

SHA = "a" * 40


@pytest.mark.parametrize(
    ("module", "headers", "payload", "expected"),
    [
        (github_webhooks, {"X-GitHub-Event": "ping", "X-GitHub-Delivery": "d"}, {"zen": "x"}, None),
        (
            github_webhooks,
            {"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": "d1"},
            {"action": "closed", "pull_request": {"number": 7}, "repository": {"full_name": "a/b"}},
            ("d1", "pull_request.closed", ("a/b#7",)),
        ),
        (
            github_webhooks,
            {"X-GitHub-Event": "push", "X-GitHub-Delivery": "d2"},
            {"commits": [{"id": SHA}, {"id": "short"}], "repository": {"full_name": "a/b"}},
            ("d2", "push", (SHA,)),
        ),
        (
            github_webhooks,
            {"X-GitHub-Event": "release", "X-GitHub-Delivery": "d3"},
            {"action": "published", "release": {"tag_name": "v1.2"}, "repository": {"full_name": "a/b"}},
            ("d3", "release.published", ("v1.2",)),
        ),
        (
            jira_webhooks,
            {"X-Atlassian-Webhook-Identifier": "j1"},
            {
                "webhookEvent": "issuelink_created",
                "issueLink": {"sourceIssueId": 10, "destinationIssueId": 11},
            },
            ("j1", "issuelink_created", ("10", "11")),
        ),
        (jira_webhooks, {}, {"webhookEvent": "sprint_started"}, None),
        (jira_webhooks, {}, ["not", "an", "object"], None),
        (
            gitlab_webhooks,
            {"X-Gitlab-Event": "Note Hook", "X-Gitlab-Event-UUID": "g1"},
            {"object_kind": "note", "project": {"path_with_namespace": "g/p"}, "merge_request": {"iid": 3}},
            ("g1", "Note Hook", ("g/p!3",)),
        ),
        (
            gitlab_webhooks,
            {"X-Gitlab-Event": "Pipeline Hook", "Idempotency-Key": "g2", "X-Gitlab-Event-UUID": "other"},
            {
                "object_kind": "pipeline",
                "project": {"path_with_namespace": "g/p"},
                "object_attributes": {"id": 9},
            },
            ("g2", "Pipeline Hook", ("g/p pipeline 9",)),
        ),
        (gitlab_webhooks, {}, {"object_kind": "wiki_page", "project": {"path_with_namespace": "g/p"}}, None),
        (
            zendesk_webhooks,
            {"X-Zendesk-Webhook-Invocation-Id": "z1", "X-Zendesk-Webhook-Id": "webhook"},
            {"ticket_id": "42"},
            ("z1", "trigger", ("#42",)),
        ),
        (
            zendesk_webhooks,
            {},
            {"type": "zen:event-type:user.created", "id": "e", "detail": {"id": "5"}},
            None,
        ),
        (
            zendesk_webhooks,
            {"X-Zendesk-Webhook-Id": "webhook"},
            {"type": "zen:event-type:ticket.created", "id": "evt-9", "subject": "zen:ticket:77"},
            ("evt-9", "zen:event-type:ticket.created", ("#77",)),
        ),
    ],
)
def test_providers_name_the_delivery_the_event_and_the_items(module, headers, payload, expected):
    event = module.event_of(headers, payload)
    if expected is None:
        assert event is None
    else:
        assert (event.delivery_id, event.event, event.item_keys) == expected


# A delivery from each tool, end to end ----------------------------------------------------------------


def test_a_signed_delivery_is_recorded_and_its_item_read_again_under_a_webhook_run(
    hooked, through_the_fake, eager_tasks, client, django_capture_on_commit_callbacks
):
    through_the_fake(hooked)
    scope = hooked.world.scope
    cursor = Scope.objects.get(pk=scope.pk).cursor
    body = hooked.body()

    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, hooked, body, hooked.headers(body, delivery="delivery-1"))

    assert response.status_code == 202, response.content
    delivery = WebhookDelivery.objects.get()
    assert (delivery.connection_id, delivery.delivery_id) == (hooked.connection.pk, "delivery-1")
    assert delivery.item_keys == [hooked.key]
    assert delivery.processed_at is not None and delivery.message == ""
    run = SyncRun.objects.get(scope=scope)
    assert (run.trigger, run.outcome, run.read, run.created, run.failed) == ("webhook", "success", 1, 1, 0)
    artifact = Artifact.objects.get(connection=hooked.connection, key=hooked.key)
    assert artifact.title == "Pushed by a webhook"
    # One item read out of order proves nothing about the others: the scheduled sync's cursor stays.
    assert Scope.objects.get(pk=scope.pk).cursor == cursor


def test_the_view_only_records_and_queues_on_commit(
    hooked, queued, client, django_capture_on_commit_callbacks
):
    body = hooked.body()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post(client, hooked, body, hooked.headers(body))
    assert response.status_code == 202
    assert queued == []  # nothing before the commit
    for callback in callbacks:
        callback()
    assert queued == [WebhookDelivery.objects.get().pk]
    assert SyncRun.objects.count() == 0


def test_a_delivery_passes_csrf_checks_without_a_token(jira_hook, queued, django_capture_on_commit_callbacks):
    body = jira_hook.body()
    with django_capture_on_commit_callbacks(execute=True):
        response = post(Client(enforce_csrf_checks=True), jira_hook, body, jira_hook.headers(body))
    assert response.status_code == 202


# Refusals: each answers before anything is stored ------------------------------------------------------


def test_a_wrong_signature_is_refused_and_stores_nothing(hooked, queued, client):
    body = hooked.body()
    before = store_state()
    wrong = post(client, hooked, body, hooked.headers(body, secret="not-the-secret"))
    assert wrong.status_code == 401
    if hooked.tool != "gitlab":  # GitLab sends its token in clear and signs nothing: no body to tamper with
        tampered = post(client, hooked, body.replace(b"}", b" }", 1), hooked.headers(body))
        assert tampered.status_code == 401
    assert store_state() == before and queued == []


def test_a_missing_signature_is_refused_and_stores_nothing(hooked, queued, client):
    body = hooked.body()
    headers = hooked.headers(body)
    del headers[hooked.signature_header]
    before = store_state()
    response = post(client, hooked, body, headers)
    assert response.status_code == 401
    assert store_state() == before and queued == []


def test_a_connection_without_a_webhook_secret_refuses_every_delivery_and_says_why(hooked, queued, client):
    with_secret(hooked, None)
    body = hooked.body()
    before = store_state()
    response = post(client, hooked, body, hooked.headers(body, secret=""))
    assert response.status_code == 401
    assert "no webhook secret" in response.json()["detail"]
    assert store_state() == before and queued == []


def test_a_replayed_delivery_is_answered_200_and_enqueues_nothing(
    hooked, queued, client, django_capture_on_commit_callbacks
):
    body = hooked.body()
    headers = hooked.headers(body, delivery="same-delivery")
    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, hooked, body, headers).status_code == 202
    before = store_state()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        again = post(client, hooked, body, headers)
    assert again.status_code == 200
    assert callbacks == [] and len(queued) == 1
    assert store_state() == before


def test_a_tool_that_sends_no_delivery_id_is_deduplicated_by_the_hash_of_the_body(
    jira_hook, queued, client, django_capture_on_commit_callbacks
):
    body = jira_hook.body()
    headers = jira_hook.sign(body, SECRET)  # no X-Atlassian-Webhook-Identifier (Data Center)
    with django_capture_on_commit_callbacks(execute=True):
        first = post(client, jira_hook, body, headers)
        second = post(client, jira_hook, body, headers)
    assert (first.status_code, second.status_code) == (202, 200)
    assert WebhookDelivery.objects.get().delivery_id == f"sha256:{hashlib.sha256(body).hexdigest()}"
    assert len(queued) == 1


def test_an_oversized_body_is_refused_by_its_content_length(jira_hook, queued, client):
    body = jira_hook.body(padding="x" * MAX_BODY_BYTES)
    before = store_state()
    response = post(client, jira_hook, body, jira_hook.headers(body))
    assert response.status_code == 413
    assert store_state() == before and queued == []


class CountingStream(io.BytesIO):
    def __init__(self, size: int):
        super().__init__(b"{" + b" " * (size - 1))
        self.taken = 0

    def read(self, size=-1):
        chunk = super().read(size)
        self.taken += len(chunk)
        return chunk


def test_an_oversized_body_is_refused_without_reading_it(jira_hook, queued):
    stream = CountingStream(4 * MAX_BODY_BYTES)
    environ = {"wsgi.input": stream, "CONTENT_LENGTH": str(4 * MAX_BODY_BYTES)}
    request = RequestFactory().generic("POST", jira_hook.url, content_type="application/json", **environ)
    response = webhook_receive_view(request, jira_hook.connection.pk)
    assert response.status_code == 413
    assert stream.taken == 0
    # A body that is bigger than the limit, whatever the header claims, is never read past the limit.
    stream = CountingStream(4 * MAX_BODY_BYTES)
    environ = {"wsgi.input": stream, "CONTENT_LENGTH": str(MAX_BODY_BYTES)}
    request = RequestFactory().generic("POST", jira_hook.url, content_type="application/json", **environ)
    request._stream = stream  # as a server that does not bound the input by Content-Length
    response = webhook_receive_view(request, jira_hook.connection.pk)
    assert response.status_code == 413
    assert stream.taken == MAX_BODY_BYTES + 1
    assert WebhookDelivery.objects.count() == 0 and queued == []


@pytest.mark.parametrize(
    "body",
    [b'{"webhookEvent": "jira:issue_updated", ', b"\xff\xfe{", b"[" * 200_000],
    ids=["cut", "bytes", "deep"],
)
def test_a_signed_body_that_is_not_json_is_a_400(hooked, queued, client, body):
    before = store_state()
    response = post(client, hooked, body, hooked.headers(body))
    assert response.status_code == 400
    assert store_state() == before and queued == []


def test_an_event_the_provider_ignores_is_a_204(hooked, queued, client):
    body = json.dumps({"zen": "Keep it logically awesome."}).encode()
    headers = hooked.headers(body)
    if hooked.tool == "github":
        headers["X-GitHub-Event"] = "ping"
    before = store_state()
    response = post(client, hooked, body, headers)
    assert (response.status_code, response.content) == (204, b"")
    assert store_state() == before and queued == []


def test_an_unknown_connection_or_one_without_webhooks_is_a_404(client, queued):
    missing = (ToolConnection.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1
    jenkins = ToolConnectionFactory(kind="jenkins", credentials={WEBHOOK_CREDENTIAL: SECRET})
    before = store_state()
    for connection_id in (missing, jenkins.pk):
        response = client.post(hook_url(connection_id), data=b"{}", content_type="application/json")
        assert response.status_code == 404
    assert store_state() == before and queued == []


@pytest.mark.parametrize("method", ["get", "put", "delete", "head"])
def test_only_post_is_allowed(jira_hook, client, method, queued):
    before = store_state()
    response = getattr(client, method)(jira_hook.url)
    assert response.status_code == 405
    assert store_state() == before and queued == []


def test_secrets_never_reach_responses_or_logs(
    hooked, through_the_fake, eager_tasks, client, caplog, django_capture_on_commit_callbacks
):
    through_the_fake(hooked)
    caplog.set_level(logging.DEBUG)
    body = hooked.body()
    responses = []
    with django_capture_on_commit_callbacks(execute=True):
        responses.append(post(client, hooked, body, hooked.headers(body)))
        responses.append(post(client, hooked, body, hooked.headers(body, secret="wrong")))
        responses.append(post(client, hooked, b"not json", hooked.headers(b"not json")))
        with_secret(hooked, None)
        responses.append(post(client, hooked, body, hooked.headers(body)))
    assert [response.status_code for response in responses] == [202, 401, 400, 401]
    for response in responses:
        assert SECRET not in response.content.decode()
    assert SECRET not in caplog.text
    assert SECRET not in repr(WebhookDelivery.objects.get().__dict__)


# Processing: the scope, failures, and the retry that shares the re-read ------------------------------


def test_the_item_is_stored_in_the_enabled_scope_that_read_it_before(jira_hook, through_the_fake):
    through_the_fake(jira_hook)
    world = jira_hook.world
    first = world.scope
    second = ScopeFactory(connection=world.connection, name="Second", query="ABC")
    services.scope_items_reread(second, [jira_hook.key], trigger="manual")  # stored by the second scope
    delivery = WebhookDelivery.objects.create(
        connection=world.connection,
        delivery_id="d",
        event="e",
        item_keys=[jira_hook.key],
        received_at=world.clock.now,
    )
    services.webhook_delivery_process(delivery)
    assert SyncRun.objects.get(trigger="webhook").scope == second

    Scope.objects.filter(pk=second.pk).update(enabled=False)  # disabled: the first enabled scope takes it
    delivery = WebhookDelivery.objects.create(
        connection=world.connection,
        delivery_id="d2",
        event="e",
        item_keys=[jira_hook.key],
        received_at=world.clock.now,
    )
    services.webhook_delivery_process(delivery)
    assert SyncRun.objects.filter(trigger="webhook").order_by("-pk").first().scope == first


def test_an_item_that_cannot_be_read_is_named_and_the_others_are_stored(jira_hook, through_the_fake):
    through_the_fake(jira_hook)
    world = jira_hook.world
    delivery = WebhookDelivery.objects.create(
        connection=world.connection,
        delivery_id="d",
        event="jira:issue_deleted",
        item_keys=["ABC-999", jira_hook.key],
        received_at=world.clock.now,
    )
    (run,) = services.webhook_delivery_process(delivery)
    assert (run.trigger, run.outcome, run.read, run.failed) == ("webhook", "partial", 2, 1)
    assert "ABC-999" in run.message
    delivery.refresh_from_db()
    assert delivery.processed_at is not None and "ABC-999" in delivery.message
    assert Artifact.objects.filter(key=jira_hook.key).exists()
    # Done once: running the task again does nothing.
    assert tasks.webhook_delivery_task(delivery.pk) == {}
    assert SyncRun.objects.count() == 1


def test_a_connection_without_an_enabled_scope_marks_the_delivery_processed_with_a_note(jira_hook):
    Scope.objects.filter(connection=jira_hook.connection).update(enabled=False)
    delivery = WebhookDelivery.objects.create(
        connection=jira_hook.connection,
        delivery_id="d",
        event="e",
        item_keys=[jira_hook.key],
        received_at=jira_hook.world.clock.now,
    )
    assert services.webhook_delivery_process(delivery) == []
    delivery.refresh_from_db()
    assert delivery.processed_at is not None and "no enabled scope" in delivery.message
    assert SyncRun.objects.count() == 0


def test_retrying_a_sync_error_reads_the_item_again_through_the_same_helper(jira_hook):
    world = jira_hook.world
    error = SyncError.objects.create(
        connection=world.connection,
        scope=world.scope,
        stage="read",
        fingerprint="item:1",
        item_key=jira_hook.key,
        message="boom",
        first_seen_at=world.clock.now,
        last_seen_at=world.clock.now,
    )
    assert services.sync_error_retry(error, transport=world.transport)
    run = SyncRun.objects.get()
    assert (run.trigger, run.outcome, run.created) == ("manual", "success", 1)
    error.refresh_from_db()
    assert error.resolved_at is not None
    assert Scope.objects.get(pk=world.scope.pk).cursor is None


# Admin ------------------------------------------------------------------------------------------------


def test_the_connection_admin_shows_the_hook_url_and_the_secret_stays_write_only(jira_hook, client):
    client.force_login(StaffFactory())
    url = reverse("admin:connectors_toolconnection_change", args=[jira_hook.connection.pk])
    response = client.get(url)
    content = response.content.decode()
    assert f"http://testserver{jira_hook.url}" in content
    assert "Webhook secret: stored" in content
    assert SECRET not in content
    form = response.context["adminform"].form
    assert form["credential__webhook_secret"].value() in (None, "")


def test_deliveries_are_listed_filtered_and_searched_read_only(jira_hook, client):
    client.force_login(StaffFactory())
    now = jira_hook.world.clock.now
    queued_one = WebhookDelivery.objects.create(
        connection=jira_hook.connection,
        delivery_id="d1",
        event="jira:issue_updated",
        item_keys=["ABC-1"],
        received_at=now,
    )
    done = WebhookDelivery.objects.create(
        connection=jira_hook.connection,
        delivery_id="d2",
        event="jira:issue_created",
        item_keys=["ABC-2"],
        received_at=now + timedelta(minutes=1),
        processed_at=now + timedelta(minutes=2),
    )
    url = reverse("admin:connectors_webhookdelivery_changelist")

    def listed(**query):
        return list(client.get(url, query).context["cl"].result_list)

    assert listed() == [done, queued_one]
    assert listed(processed="no") == [queued_one]
    assert listed(processed="yes") == [done]
    assert listed(q="ABC-2") == [done]
    assert listed(q="d1") == [queued_one]
    assert client.get(reverse("admin:connectors_webhookdelivery_add")).status_code == 403
