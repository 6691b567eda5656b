"""The isolation crawler: every URL of the portal, the API and the exports, asked by every kind of login.

The crawler walks the URLconf (the portal's pages and CSV exports, the API router's lists, details,
extra actions and format suffixes, the metrics endpoints, the webhook receiver) and fills each pattern's
parameters with every object of a world built for it: two products, two partners, in-house items linked
to each partner's own, integrations, link rules, sync errors and runs, and tool credentials. Each URL is
asked as anonymous, partner A, the product owner of one product, a field-team viewer and leadership. It
checks the status (200 for what the login reaches, 404 for any other object, the login page or 401 for
anonymous) and that no body, HTML, JSON or CSV, holds a name, key, title, id, amount or account the login
may not see. Every object has an id of its own range (9,1xx,xxx products, 9,5xx,xxx artifacts...), so an
id in a body is never a coincidence.

A URL pattern the crawler cannot fill fails the test: a new page or endpoint must be added to ROUTES,
saying which objects it is asked for, before it can ship. Django admin (staff only, tests/vsm/test_admin.py)
and the login pages are the only patterns left out, in EXCLUDED_PREFIXES.
"""

import html
import re
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import count

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import Client
from django.urls import URLResolver, get_resolver, reverse
from django.utils import timezone

from connectors.models import Integration, IntegrationPair, PendingLink
from metrics.services import product_rollups_rebuild
from tests.factories import (
    ArtifactLinkFactory,
    LinkRuleFactory,
    PartnerFactory,
    PartnerGrantFactory,
    PartnerMembershipFactory,
    ProductFactory,
    ProductRoleFactory,
    ScopeFactory,
    SyncErrorFactory,
    SyncRunFactory,
    TeamFactory,
    ToolConnectionFactory,
    TypeMappingFactory,
    UserFactory,
    artifact_model,
    flow_item,
    grant_view_all_products,
)
from vsm.choices import FlowState, LinkKind, ProductRoleName

pytestmark = pytest.mark.django_db

LOGINS = ("anonymous", "partner_a", "owner", "field", "leader")
SEEN_BY_ALL = frozenset(LOGINS) - {"anonymous"}
INTERNAL = frozenset({"owner", "field", "leader"})  # every login with a role on Checkout, or more
ALL_PRODUCTS = frozenset({"field", "leader"})
EXCLUDED_PREFIXES = {
    "admin/": "Django admin: staff only (tests/vsm/test_admin.py, tests/connectors/test_admin*.py)",
    "accounts/": "Django's login, logout and password views: no data",
}
SECRET = "sekret-token-never-shown"


# --- the world -------------------------------------------------------------------------------------------


@dataclass
class Thing:
    """An object of the world: what would betray it in a body, and who may see it."""

    kind: str
    obj: object
    seen_by: frozenset[str]
    words: tuple[str, ...] = ()  # names, keys, titles, amounts, accounts


@dataclass
class World:
    things: list[Thing] = field(default_factory=list)
    users: dict[str, object] = field(default_factory=dict)

    def add(self, kind, obj, seen_by, *words):
        self.things.append(Thing(kind, obj, frozenset(seen_by), tuple(words)))
        return obj

    def of(self, kind: str) -> list[Thing]:
        return [thing for thing in self.things if thing.kind == kind]

    def forbidden_for(self, login: str) -> tuple[set[str], set[str]]:
        """The words and the ids no body may hold for this login."""
        words, ids = {SECRET}, set()
        for thing in self.things:
            if login not in thing.seen_by:
                words.update(thing.words)
                ids.add(str(thing.obj.pk))
        return words, ids


def _ids(start: int):
    numbers = count(start)
    return lambda: next(numbers)


def build_crawler_world() -> World:
    """Checkout (granted to Acme and Bolt) and Ledger (granted to Bolt), each object with its id range.

    Checkout: request REQ-31 (Salesforce, an account and revenue) <- EPIC-5 (in-house Jira, core team)
    <- ACME-21 (Acme's Jira) and CORE-7 (in-house); ACME-22 (in-house Jira, Acme's team); ACME-21 is
    committed in Bolt's commit BOLTC-9, built in BUILD-88 (Jenkins), deployed in DEPLOY-55 (production),
    which INC-66 followed; BOLT-44 is Bolt's own. Acme's scope: ACME-21, ACME-22 and, one link away,
    EPIC-5 and BOLTC-9. Ledger: LEDG-REQ-13 <- LEDG-12 (a Ledger-only Jira), linked to ACME-21 across
    the products.
    """
    w = World()
    now = timezone.now()

    def days_ago(days: float):
        return now - timedelta(days=days)

    product_id, partner_id, team_id = _ids(9_100_001), _ids(9_200_001), _ids(9_300_001)
    connection_id, artifact_id, link_id = _ids(9_400_001), _ids(9_500_001), _ids(9_600_001)
    integration_id, rule_id, scope_id = _ids(9_700_001), _ids(9_800_001), _ids(9_900_001)

    checkout = w.add(
        "product", ProductFactory(id=product_id(), name="Checkout", slug="checkout"), SEEN_BY_ALL, "Checkout"
    )
    ledger = w.add(
        "product",
        ProductFactory(id=product_id(), name="Ledger Secret Product", slug="ledger-secret-slug"),
        ALL_PRODUCTS,
        "Ledger Secret Product",
        "ledger-secret-slug",
    )
    acme = w.add("partner", PartnerFactory(id=partner_id(), name="Acme Partner", slug="acme"), SEEN_BY_ALL)
    bolt = w.add(
        "partner", PartnerFactory(id=partner_id(), name="Bolt Partner", slug="bolt"), INTERNAL, "Bolt Partner"
    )
    PartnerGrantFactory(partner=acme, product=checkout)
    PartnerGrantFactory(partner=bolt, product=checkout)
    PartnerGrantFactory(partner=bolt, product=ledger)

    def connection(kind, name, seen_by, partner=None):
        made = ToolConnectionFactory(
            id=connection_id(),
            kind=kind,
            name=name,
            partner=partner,
            credentials={"api_token": SECRET, "webhook_secret": SECRET},
        )
        return w.add("connection", made, seen_by, name)

    salesforce = connection("salesforce", "Salesforce In-house", INTERNAL)
    jira = connection("jira", "Jira In-house", INTERNAL)
    acme_jira = connection("jira", "Acme Jira", SEEN_BY_ALL, acme)
    bolt_gitlab = connection("gitlab", "Bolt GitLab", INTERNAL, bolt)
    jenkins = connection("jenkins", "Jenkins In-house", INTERNAL)
    ledger_jira = connection("jira", "Ledger Jira Only", ALL_PRODUCTS)

    core_team = w.add(
        "team", TeamFactory(id=team_id(), product=checkout, name="Checkout Core Team"), INTERNAL, "Core Team"
    )
    acme_team = w.add(
        "team", TeamFactory(id=team_id(), product=checkout, name="Acme Squad", partner=acme), SEEN_BY_ALL
    )
    bolt_team = w.add(
        "team",
        TeamFactory(id=team_id(), product=checkout, name="Bolt Squad", partner=bolt),
        INTERNAL,
        "Bolt Squad",
    )
    ledger_team = w.add(
        "team",
        TeamFactory(id=team_id(), product=ledger, name="Ledger Team Hidden"),
        ALL_PRODUCTS,
        "Ledger Team",
    )

    def item(
        product, key, connection, seen_by, *moves, model="story", team=None, flow_type="feature", **extra
    ):
        made = flow_item(
            product,
            *moves,
            id=artifact_id(),
            created_at=extra.pop("created_at", days_ago(70)),
            artifact_model=artifact_model(model),
            connection=connection,
            team=team,
            key=key,
            title=f"Title of {key}",
            flow_type=flow_type,
            **extra,
        )
        return w.add("artifact", made, seen_by, key, f"Title of {key}")

    def worked(start, end=None):
        moves = [(days_ago(start), FlowState.ACTIVE)]
        if end is not None:
            moves.append((days_ago(end), FlowState.DONE))
        return moves

    acme_only = SEEN_BY_ALL
    request = item(
        checkout,
        "REQ-31",
        salesforce,
        INTERNAL,
        model="request",
        flow_type=None,
        fields={"customer_account": "Globex Hidden Account", "revenue": 4242421, "deal_breaker": True},
        value="98765.43",
    )
    w.things[-1].words += ("Globex Hidden Account", "4242421", "98765.43")
    epic = item(checkout, "EPIC-5", jira, acme_only, *worked(60, 20), model="epic", team=core_team)
    acme_story = item(checkout, "ACME-21", acme_jira, acme_only, *worked(50, 30), team=acme_team)
    item(checkout, "ACME-22", jira, acme_only, *worked(45, 25), team=acme_team)
    core_story = item(checkout, "CORE-7", jira, INTERNAL, *worked(40, 22), team=core_team)
    bolt_story = item(
        checkout, "BOLT-44", bolt_gitlab, INTERNAL, *worked(35, 15), model="defect", team=bolt_team
    )
    commit = item(
        checkout, "BOLTC-9", bolt_gitlab, acme_only, model="commit", flow_type=None, created_at=days_ago(31)
    )
    build = item(
        checkout, "BUILD-88", jenkins, INTERNAL, model="build", flow_type=None, created_at=days_ago(29)
    )
    deployment = item(
        checkout,
        "DEPLOY-55",
        jenkins,
        INTERNAL,
        model="deployment",
        flow_type=None,
        created_at=days_ago(28),
        flow_state=FlowState.DONE,
        done_at=days_ago(28),
        fields={"environment": "production", "result": "SUCCESS"},
    )
    incident = item(checkout, "INC-66", jira, INTERNAL, *worked(27, 26), model="incident", flow_type="defect")
    ledger_request = item(
        ledger,
        "LEDG-REQ-13",
        ledger_jira,
        ALL_PRODUCTS,
        model="request",
        flow_type=None,
        fields={"customer_account": "Ledger Account Hidden", "revenue": 7373731},
        value="31337.77",
    )
    w.things[-1].words += ("Ledger Account Hidden", "7373731", "31337.77")
    ledger_story = item(ledger, "LEDG-12", ledger_jira, ALL_PRODUCTS, *worked(30, 10), team=ledger_team)
    item(ledger, "BOLT-L77", bolt_gitlab, ALL_PRODUCTS, *worked(20, 5), team=ledger_team)

    def link(source, target, kind, seen_by):
        made = ArtifactLinkFactory(id=link_id(), source=source, target=target, kind=kind)
        return w.add("link", made, seen_by)

    link(epic, request, LinkKind.DERIVED_FROM, INTERNAL)
    link(acme_story, epic, LinkKind.CHILD_OF, acme_only)
    link(core_story, epic, LinkKind.CHILD_OF, INTERNAL)
    link(acme_story, commit, LinkKind.COMMITTED_IN, acme_only)
    link(commit, build, LinkKind.BUILT_IN, INTERNAL)
    link(build, deployment, LinkKind.DEPLOYED_IN, INTERNAL)
    link(incident, deployment, LinkKind.RELATES_TO, INTERNAL)
    link(ledger_story, ledger_request, LinkKind.DERIVED_FROM, ALL_PRODUCTS)
    link(ledger_story, acme_story, LinkKind.RELATES_TO, ALL_PRODUCTS)
    link(bolt_story, core_story, LinkKind.RELATES_TO, INTERNAL)
    PendingLink.objects.create(
        source=acme_story,
        target_connection=jira,
        target_key="CORE-404",
        kind=LinkKind.RELATES_TO,
        first_seen_at=days_ago(30),
    )

    def scope(connection, product, name):
        return ScopeFactory(id=scope_id(), connection=connection, product=product, name=name)

    scopes = {
        "requests": scope(salesforce, checkout, "Checkout requests"),
        "stories": scope(jira, checkout, "Checkout stories"),
        "acme": scope(acme_jira, checkout, "Acme stories"),
        "bolt": scope(bolt_gitlab, checkout, "Bolt commits"),
        "jenkins": scope(jenkins, checkout, "Checkout builds"),
        "ledger": scope(ledger_jira, ledger, "Ledger stories"),
        "ledger-jira": scope(jira, ledger, "Ledger in the in-house Jira"),
        "ledger-bolt": scope(bolt_gitlab, ledger, "Ledger commits"),
    }
    for name, run_scope in scopes.items():
        SyncRunFactory(scope=run_scope, outcome="failed" if name.startswith("ledger") else "success")
        SyncErrorFactory(scope=run_scope, connection=run_scope.connection, message=f"error in {name}")

    tool_types = count(1)

    def integration(name, source, target, model, seen_by):
        made = Integration.objects.create(
            id=integration_id(),
            name=name,
            artifact_model=artifact_model(model),
            source_scope=source,
            source_type_mapping=TypeMappingFactory(
                connection=source.connection,
                tool_type=f"Type {next(tool_types)}",
                artifact_model=artifact_model(model),
            ),
            target_scope=target,
            target_type_mapping=TypeMappingFactory(
                connection=target.connection,
                tool_type=f"Type {next(tool_types)}",
                artifact_model=artifact_model(model),
            ),
            last_run_at=days_ago(1),
        )
        return w.add("integration", made, seen_by, name)

    checkout_flow = integration(
        "Checkout requests to Jira", scopes["requests"], scopes["stories"], "request", INTERNAL
    )
    IntegrationPair.objects.create(integration=checkout_flow, source=request, target=epic, state="ok")
    # Between two tools that also feed Checkout: still none of Checkout's owner's business.
    integration(
        "Ledger secret integration", scopes["ledger-bolt"], scopes["ledger-jira"], "story", ALL_PRODUCTS
    )
    w.add(
        "rule",
        LinkRuleFactory(
            id=rule_id(), connection=bolt_gitlab, target_connection=jira, name="Bolt commit keys"
        ),
        INTERNAL,
        "Bolt commit keys",
    )
    w.add(
        "rule",
        LinkRuleFactory(
            id=rule_id(), connection=ledger_jira, target_connection=jira, name="Ledger rule hidden"
        ),
        ALL_PRODUCTS,
        "Ledger rule hidden",
    )

    for product in (checkout, ledger):
        product_rollups_rebuild(product, now=now)

    w.checkout, w.ledger = checkout, ledger
    w.users = {
        "anonymous": AnonymousUser(),
        "partner_a": PartnerMembershipFactory(partner=acme, user__username="crawler-acme").user,
        "owner": ProductRoleFactory(
            product=checkout, role=ProductRoleName.OWNER, user__username="crawler-owner"
        ).user,
        "field": UserFactory(username="crawler-field"),
        "leader": grant_view_all_products(UserFactory(username="crawler-leader")),
    }
    for product in (checkout, ledger):
        ProductRoleFactory(product=product, user=w.users["field"], role=ProductRoleName.VIEWER)
    return w


# --- the routes ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One URL to ask, and the logins that reach what it shows (200); any other login gets `refused`."""

    url: str
    seen_by: frozenset[str]
    refused: int = 404
    answer: int = 200  # what a login that reaches it gets (302 for a redirect, 405 for POST-only)


def _product_things(w: World) -> list[Thing]:
    return w.of("product")


def _per_product(name: str, *extra: dict, query: str = ""):
    def cases(w: World):
        for thing in _product_things(w):
            for kwargs in extra or ({},):
                yield Case(reverse(name, kwargs={"slug": thing.obj.slug, **kwargs}) + query, thing.seen_by)

    return cases


def _per_object(name: str, kind: str, *, param: str = "pk", formats=("",)):
    def cases(w: World):
        for thing in w.of(kind):
            for suffix in formats:
                kwargs = {param: thing.obj.pk, **({"format": suffix} if suffix else {})}
                yield Case(reverse(name, kwargs=kwargs), thing.seen_by)

    return cases


def _everyone(name: str, *queries: str, formats=("",), answer: int = 200):
    def cases(w: World):
        for suffix in formats:
            url = reverse(name, kwargs={"format": suffix} if suffix else None)
            for query in queries or ("",):
                yield Case(url + query, SEEN_BY_ALL, answer=answer)

    return cases


def _metrics(name: str, *extra: str, bare: int = 200):
    """Per product: the endpoint with no more than the product (answering `bare`), and with each extra."""

    def cases(w: World):
        for thing in _product_things(w):
            yield Case(f"{reverse(name)}?product={thing.obj.slug}", thing.seen_by, answer=bare)
            for query in extra:
                yield Case(f"{reverse(name)}?product={thing.obj.slug}{query}", thing.seen_by)

    return cases


def _webhook(w: World):
    for thing in w.of("connection"):
        # POST only: a GET is refused alike for every connection, whoever asks.
        yield Case(
            reverse("connectors:webhook", kwargs={"connection_id": thing.obj.pk}), SEEN_BY_ALL, answer=405
        )


LIST_FORMATS = ("", "json", "api")
UNTIL = (timezone.localdate() + timedelta(days=30)).isoformat()
DETAIL_FORMATS = ("", "json")
FLOW_CHARTS = [
    {"chart": chart} for chart in ("velocity", "distribution", "flow_time", "scatter", "load", "efficiency")
]
ROUTES = {
    # The portal
    "portal:home": _everyone("portal:home"),
    "portal:landing": _everyone("portal:landing", answer=302),
    "portal:product": _per_product("portal:product"),
    "portal:summary": _per_product("portal:summary"),
    "portal:flow": _per_product("portal:flow"),
    "portal:flow-csv": _per_product("portal:flow-csv", *FLOW_CHARTS),
    "portal:items": _per_product("portal:items"),
    "portal:bottlenecks": _per_product("portal:bottlenecks"),
    "portal:bottlenecks-csv": _per_product(
        "portal:bottlenecks-csv", {"table": "states"}, {"table": "statuses"}
    ),
    "portal:analyzer": _per_product("portal:analyzer"),
    "portal:dora": _per_product("portal:dora"),
    "portal:dora-csv": _per_product(
        "portal:dora-csv",
        *(
            {"table": table}
            for table in ("frequency", "lead_time", "failure_rate", "recovery", "deployments")
        ),
    ),
    "portal:forecast": _per_product("portal:forecast"),
    "portal:forecast-csv": _per_product("portal:forecast-csv", {"table": "forecast"}, {"table": "history"}),
    "portal:product-requests": _per_product("portal:product-requests"),
    "portal:artifact": _per_object("portal:artifact", "artifact"),
    "portal:trace": _per_object("portal:trace", "artifact"),
    "portal:trace-search": _everyone("portal:trace-search", "", "?q=Title+of", "?q=-2"),
    "portal:requests": _everyone("portal:requests", "", "?status=delivered"),
    "portal:requests-csv": _everyone("portal:requests-csv"),
    "portal:landscape": _everyone("portal:landscape"),
    # The API: the router's lists, details and extra actions, with their format suffixes
    "api-root": _everyone("api-root", formats=LIST_FORMATS),
    "api-schema": _everyone("api-schema", "", "?format=json"),
    "api-docs": _everyone("api-docs"),
    "product-list": _everyone("product-list", formats=LIST_FORMATS),
    "product-detail": _per_object("product-detail", "product", formats=DETAIL_FORMATS),
    "team-list": _everyone("team-list", formats=LIST_FORMATS),
    "team-detail": _per_object("team-detail", "team", formats=DETAIL_FORMATS),
    "artifact-list": _everyone(
        "artifact-list", "", "?page_size=500&include_deleted=true", formats=LIST_FORMATS
    ),
    "artifact-detail": _per_object("artifact-detail", "artifact", formats=DETAIL_FORMATS),
    "artifact-transitions": _per_object("artifact-transitions", "artifact", formats=DETAIL_FORMATS),
    "artifactlink-list": _everyone("artifactlink-list", "", "?page_size=500", formats=LIST_FORMATS),
    "artifactlink-detail": _per_object("artifactlink-detail", "link", formats=DETAIL_FORMATS),
    "toolconnection-list": _everyone("toolconnection-list", formats=LIST_FORMATS),
    "toolconnection-detail": _per_object("toolconnection-detail", "connection", formats=DETAIL_FORMATS),
    # The metrics API, with its CSV exports
    "metrics-flow-list": _metrics("metrics-flow-list"),
    "metrics-item-list": _metrics("metrics-item-list", "&page_size=500", "&format=csv"),
    "metrics-forecast-list": _metrics("metrics-forecast-list", "&items=2", f"&until={UNTIL}", bare=400),
    "metrics-dora-list": _metrics("metrics-dora-list"),
    "metrics-lead-time-list": _metrics("metrics-lead-time-list", "&format=csv"),
    "metrics-bottlenecks-list": _metrics("metrics-bottlenecks-list"),
    # Tools post webhooks here
    "connectors:webhook": _webhook,
}


def url_patterns(resolver=None, prefix: str = "", namespace: str = ""):
    """(name, route) of every URL pattern below the resolver, namespaced as reverse() names them."""
    resolver = resolver or get_resolver()
    for pattern in resolver.url_patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from url_patterns(pattern, route, inner)
        else:
            yield (f"{namespace}{pattern.name}" if pattern.name else None), route


def crawled_patterns() -> list[tuple[str | None, str]]:
    return [
        (name, route)
        for name, route in url_patterns()
        if not any(route.startswith(prefix) for prefix in EXCLUDED_PREFIXES)
    ]


def test_the_crawler_knows_how_to_fill_every_url_pattern():
    unknown = sorted({f"{name} ({route})" for name, route in crawled_patterns() if name not in ROUTES})
    assert not unknown, (
        "URL patterns the isolation crawler cannot fill; add each to ROUTES in this module, saying which "
        f"objects it is asked for: {unknown}"
    )
    unused = set(ROUTES) - {name for name, _route in crawled_patterns()}
    assert not unused, f"ROUTES names patterns that no longer exist: {sorted(unused)}"


# --- the crawl -------------------------------------------------------------------------------------------


def _anonymous_answer(url: str) -> tuple[int, ...]:
    if url.startswith("/hooks/"):
        return (405,)
    if url.startswith("/api/") and not url.startswith("/api/docs/"):
        return (401,)
    return (302,)


def _body_text(response) -> str:
    content = b"".join(response.streaming_content) if response.streaming else response.content
    return html.unescape(content.decode("utf-8", errors="replace"))


def _leaks(body: str, url: str, words: set[str], ids: set[str]) -> list[str]:
    """What of the forbidden words and ids the body holds; what the URL itself asked for is not a leak
    (a 404 may repeat the slug that was asked)."""
    found = [word for word in words if word in body and word not in url]
    found += [
        f"id {number}" for number in ids if re.search(rf"(?<!\d){number}(?!\d)", body) and number not in url
    ]
    return sorted(found)


@pytest.fixture(scope="module")
def crawler_world(django_db_blocker, django_db_setup):
    """Built once per module (per xdist worker) in its own transaction, rolled back at the end."""
    from django.db import transaction

    with django_db_blocker.unblock():
        atomic = transaction.atomic()
        atomic.__enter__()
        try:
            yield build_crawler_world()
        finally:
            transaction.set_rollback(True)
            atomic.__exit__(None, None, None)


@pytest.mark.parametrize("login", LOGINS)
def test_no_login_reaches_or_reads_what_is_not_its_own(crawler_world, login):
    w = crawler_world
    client = Client(raise_request_exception=False)  # a server error is a finding, not the end of the crawl
    if login != "anonymous":
        client.force_login(w.users[login])
    words, ids = w.forbidden_for(login)
    problems = []
    asked = 0
    for name, cases in ROUTES.items():
        for case in cases(w):
            asked += 1
            response = client.get(case.url)
            if login == "anonymous":
                expected = _anonymous_answer(case.url)
            else:
                expected = (case.answer,) if login in case.seen_by else (case.refused,)
            if response.status_code not in expected:
                problems.append(f"{case.url}: {response.status_code}, expected {expected} ({name})")
                continue
            leaks = _leaks(_body_text(response), case.url, words, ids)
            if leaks:
                problems.append(f"{case.url} ({response.status_code}) shows {leaks}")
    assert asked > 200
    assert not problems, f"{len(problems)} of {asked} requests as {login}:\n" + "\n".join(problems)
