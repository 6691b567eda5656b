"""The demo world: a software company's toolchain with a year of history, and the step that keeps it moving.

`world_generate(seed, size, now)` fills fresh fakes (Jira, the partner's own Jira, GitHub, Jenkins,
Salesforce, Targetprocess, Zendesk) through their programmatic APIs with backdated history, the way the
tools would have recorded it. Deterministic: `random.Random(seed)` and the explicit `now` (the world's
present; fixed by default) decide everything, so one seed gives byte-identical tool states
(`world_dump`). Plain Python, no Django, like the fakes.

The company (Brightcart) builds three products: Checkout, Mobile App and Insights, each with in-house
teams that work in their own Jira project, one GitHub repository and Jenkins jobs ``<product>/ci``
(every push), ``<product>/release`` (weekly, its change set the commits since the previous release) and
``<product>/deploy-production`` (started by the release build; now and then it fails and is run again
the next day). A partner organisation, Acme Outsourcing, works on Checkout in its own Jira (project
ACME), its stories naming the Checkout epic they belong to in a label.

The chains, linked the way the tools link them: a customer request in Salesforce (``Linked_Item__c``:
the Targetprocess feature's key) -> the feature in Targetprocess (custom field "Jira Epic": the epic's
key) -> the epic -> its stories (parent) -> commits naming the story's key (and the pull request that
merged them) -> the release build listing those commits -> the production deployment it started
(upstream cause) and the GitHub release tagged at its newest commit. Internal ideas start as
Targetprocess requests related to their feature; support tickets in Zendesk that engineering must fix
carry the Jira bug's key in the "Jira key" field.

The stories the data tells: flow times are long-tailed (log-normal), work happens on weekdays in
office hours, Mobile App's review stage ("Ready for Review") became the bottleneck in the last quarter,
and the partner's stories take longer than the in-house teams' ones.

`tick(rng, fakes, now)` is one step of live mode: some work items move, requests and tickets arrive,
builds run and, now and then, a release ships. `world_save` / `world_load` keep the fakes' state
between runs of the demo.
"""

from __future__ import annotations

import copyreg
import hashlib
import io
import itertools
import json
import math
import pickle
import random
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from connectors.fakes.github import FakeGitHub
from connectors.fakes.jenkins import FakeJenkins
from connectors.fakes.jira import FakeJira
from connectors.fakes.salesforce import FakeSalesforce
from connectors.fakes.targetprocess import FakeTargetprocess
from connectors.fakes.wsgi import FakeApp
from connectors.fakes.zendesk import FakeZendesk

DEFAULT_SEED = 2026
ESCALATION_TAG = "engineering"  # a support ticket engineering must fix (see vsm.demo's integrations)
ESCALATION_SHARE = 0.3
DEFAULT_NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)  # a Friday afternoon in Berlin
ZONE_NAME = "Europe/Berlin"
ZONE = ZoneInfo(ZONE_NAME)
HISTORY_DAYS = 365
BOTTLENECK_SINCE_DAYS = 100  # the review stage slows down from here on: the whole last quarter
GITHUB_ORG = "brightcart"
TP_FIRST_PROJECT_ID = 100  # Targetprocess numbers projects from its entity sequence, which starts here
REQUEST_PRODUCT_FIELD = "Product__c"
TP_EPIC_FIELD = "Jira Epic"

# The fakes of the world, by the path prefix they are served under.
FAKE_NAMES = ("jira", "jira-acme", "github", "jenkins", "salesforce", "targetprocess", "zendesk")


# The plan of the company ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Statuses:
    """A Jira workflow's status names for each step of the work."""

    new: str
    active: str
    blocked: str
    ready: str  # waiting for a reviewer
    review: str | None  # being reviewed (None: the workflow has one review status)
    done: str
    cancelled: str
    delivering: str = ""  # an epic's in-progress status

    def categories(self) -> dict[str, str]:
        names = {self.new: "new", self.done: "done", self.cancelled: "done"}
        for name in (self.active, self.blocked, self.ready, self.review, self.delivering):
            if name:
                names[name] = "indeterminate"
        return names


IN_HOUSE = Statuses(
    new="To Do",
    active="In Progress",
    blocked="Blocked",
    ready="Ready for Review",
    review="In Review",
    done="Done",
    cancelled="Cancelled",
    delivering="In Delivery",
)
PARTNER_STATUSES = Statuses(
    new="Open",
    active="In Progress",
    blocked="On Hold",
    ready="Review",
    review=None,
    done="Closed",
    cancelled="Rejected",
)
IN_HOUSE_ISSUE_TYPES = ("Epic", "Story", "Bug", "Risk", "Sub-task")
PARTNER_ISSUE_TYPES = ("Story", "Bug")
DEBT_LABEL = "debt"


@dataclass(frozen=True)
class TeamPlan:
    name: str
    project: str  # its Jira project key
    partner: bool = False


@dataclass(frozen=True)
class ProductPlan:
    name: str
    slug: str
    description: str
    teams: tuple[TeamPlan, ...]  # in-house teams; the first `WorldSize.teams_per_product` take part
    deploy_weekday: int  # Monday is 0
    review_bottleneck: bool = False

    @property
    def repo(self) -> str:
        return f"{GITHUB_ORG}/{self.slug}"

    @property
    def ci_job(self) -> str:
        return f"{self.slug}/ci"

    @property
    def release_job(self) -> str:
        return f"{self.slug}/release"

    @property
    def deploy_job(self) -> str:
        return f"{self.slug}/deploy-production"


@dataclass(frozen=True)
class PartnerPlan:
    name: str
    slug: str
    product: str  # the slug of the product it works on
    team: TeamPlan


PRODUCTS = (
    ProductPlan(
        "Checkout",
        "checkout",
        "The web shop's cart, payment and order confirmation.",
        (TeamPlan("Payments", "PAY"), TeamPlan("Cart", "CART")),
        deploy_weekday=3,
    ),
    ProductPlan(
        "Mobile App",
        "mobile-app",
        "The shopping app for iOS and Android.",
        (TeamPlan("iOS", "IOS"), TeamPlan("Android", "DROID")),
        deploy_weekday=1,
        review_bottleneck=True,
    ),
    ProductPlan(
        "Insights",
        "insights",
        "Sales analytics and reports for merchants.",
        (TeamPlan("Data", "DATA"), TeamPlan("Reports", "REP")),
        deploy_weekday=2,
    ),
)
PARTNER = PartnerPlan("Acme Outsourcing", "acme", "checkout", TeamPlan("Acme storefront squad", "ACME", True))
BOTTLENECK_PRODUCT = next(product.slug for product in PRODUCTS if product.review_bottleneck)


@dataclass(frozen=True)
class WorldSize:
    name: str
    products: int  # the first of PRODUCTS (which hold the bottleneck and the partner's product)
    teams_per_product: int
    stories_per_team_week: float
    stories_per_epic: tuple[int, int]
    defects_per_team_week: float
    debt_per_team_week: float
    risks_per_team_week: float
    commits_per_story: float  # the mean; every story that starts gets at least one
    tickets_per_product_week: float
    chore_commits_per_week: float  # per repository: commits naming no work item
    requests_share: float = 0.65  # features asked for by a customer in Salesforce
    internal_share: float = 0.15  # features that start as a Targetprocess request


SIZES = {
    "small": WorldSize(
        "small",
        products=2,
        teams_per_product=1,
        stories_per_team_week=1.2,
        stories_per_epic=(4, 7),
        defects_per_team_week=0.3,
        debt_per_team_week=0.12,
        risks_per_team_week=0.05,
        commits_per_story=1.6,
        tickets_per_product_week=0.5,
        chore_commits_per_week=0.3,
    ),
    "default": WorldSize(
        "default",
        products=3,
        teams_per_product=2,
        stories_per_team_week=5.5,
        stories_per_epic=(6, 12),
        defects_per_team_week=1.2,
        debt_per_team_week=0.6,
        risks_per_team_week=0.15,
        commits_per_story=9.5,
        tickets_per_product_week=3.0,
        chore_commits_per_week=5.0,
    ),
}


def products_of(size: WorldSize) -> list[tuple[ProductPlan, list[TeamPlan]]]:
    """Each product with the teams taking part at this size (the partner's team with its product)."""
    plans = []
    for product in PRODUCTS[: size.products]:
        teams = list(product.teams[: size.teams_per_product])
        if product.slug == PARTNER.product:
            teams.append(PARTNER.team)
        plans.append((product, teams))
    return plans


def tp_project_id(product: ProductPlan) -> int:
    """The Targetprocess project of a product: made first, in PRODUCTS order, so its id is fixed."""
    return TP_FIRST_PROJECT_ID + PRODUCTS.index(product)


# What the generator records for the tests ---------------------------------------------------------------


@dataclass(frozen=True)
class Chain:
    """One traced path from a customer's request to the production deployment that delivered it."""

    request: str  # FR-000012 (Salesforce)
    feature: str  # TP-123
    epic: str
    story: str
    commit: str
    build: str  # the release build that listed the commit
    deployment: str


@dataclass
class World:
    seed: int
    size: WorldSize
    now: datetime
    fakes: dict[str, FakeApp]
    chains: list[Chain] = field(default_factory=list)


# Time ----------------------------------------------------------------------------------------------------


def at_work(rng: random.Random, instant: datetime) -> datetime:
    """The first office moment (Monday to Friday, 09:00 to 18:00 in Berlin) at or after `instant`."""
    local = instant.astimezone(ZONE)
    if local.hour >= 18:
        local = (local + timedelta(days=1)).replace(hour=9, minute=rng.randrange(60))
    elif local.hour < 9:
        local = local.replace(hour=9, minute=rng.randrange(60))
    while local.weekday() >= 5:
        local = (local + timedelta(days=1)).replace(hour=9, minute=rng.randrange(60))
    return local.astimezone(UTC).replace(microsecond=0)


def lognormal_days(rng: random.Random, median: float, sigma: float = 0.8, cap: float = 150.0) -> timedelta:
    """A long-tailed duration around `median` days."""
    return timedelta(days=min(cap, rng.lognormvariate(math.log(median), sigma)))


def poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method: fine for the small means used here."""
    if mean <= 0:
        return 0
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _weekday_moment(rng: random.Random, start: datetime, end: datetime, tries: int = 4) -> datetime:
    """A moment between start and end, preferring office hours on weekdays."""
    span = (end - start).total_seconds()
    moment = start
    for _ in range(tries):
        moment = start + timedelta(seconds=rng.random() * span)
        local = moment.astimezone(ZONE)
        if local.weekday() < 5 and 8 <= local.hour < 19:
            break
    return moment.replace(microsecond=0)


# Work items as planned, before they go into the tools ---------------------------------------------------


Move = tuple[datetime, str, str]


@dataclass
class CommitPlan:
    repo: str
    at: datetime
    message: str
    author: str
    sha: str = ""


@dataclass
class IssuePlan:
    fake: str  # "jira" or "jira-acme"
    project: str
    issue_type: str
    summary: str
    created: datetime
    moves: list[Move]
    labels: list[str] = field(default_factory=list)
    parent: IssuePlan | None = None  # an epic in the same project
    client_epic: IssuePlan | None = None  # a partner story's epic in the client's Jira
    author: str = ""
    priority: str = "Medium"
    commits: list[CommitPlan] = field(default_factory=list)
    key: str = ""

    def done_at(self, statuses: Statuses) -> datetime | None:
        """When it last reached Done (None when it is not done now)."""
        if not self.moves or self.moves[-1][2] != statuses.done:
            return None
        return self.moves[-1][0]

    def first(self, status: str) -> datetime | None:
        return next((at for at, _, to in self.moves if to == status), None)


@dataclass
class FeaturePlan:
    """A capability: asked for (in Salesforce or as a Targetprocess request) or planned in-house."""

    product: ProductPlan
    source: str  # "salesforce", "targetprocess" or "" (in-house)
    requested: datetime
    name: str
    declined: bool = False
    epic: IssuePlan | None = None
    stories: list[IssuePlan] = field(default_factory=list)


@dataclass
class TicketPlan:
    """A customer's support ticket; `defect` is the Jira bug engineering fixed for it, if any."""

    product: ProductPlan
    subject: str
    account: str
    created: datetime
    priority: str
    defect: IssuePlan | None = None
    moves: list[Move] = field(default_factory=list)


class _Path:
    """Status moves along a workflow, each at the next office moment after a wait."""

    def __init__(self, rng: random.Random, status: str, at: datetime):
        self.rng, self.status, self.at = rng, status, at
        self.moves: list[Move] = []

    def go(self, to: str, after: timedelta = timedelta(0)) -> None:
        self.at = at_work(self.rng, self.at + max(after, timedelta(0)))
        self.moves.append((self.at, self.status, to))
        self.status = to


def _active_spans(moves: list[Move], active: str, end: datetime) -> list[tuple[datetime, datetime]]:
    spans, started = [], None
    for at, _, to in moves:
        if to == active and started is None:
            started = at
        elif to != active and started is not None:
            spans.append((started, at))
            started = None
    if started is not None:
        spans.append((started, end))
    return spans


def _cut(moves: list[Move], now: datetime) -> list[Move]:
    return [move for move in moves if move[0] <= now]


NOUNS = {
    "checkout": (
        "payment form",
        "order summary",
        "voucher field",
        "address book",
        "card tokens",
        "tax rules",
        "shipping options",
        "basket totals",
        "invoice PDF",
        "refund flow",
        "3-D Secure",
        "PayPal button",
    ),
    "mobile-app": (
        "login screen",
        "product gallery",
        "push notifications",
        "wish list",
        "dark mode",
        "offline cart",
        "barcode scanner",
        "order tracking",
        "app rating prompt",
        "search filters",
        "biometric sign-in",
        "deep links",
    ),
    "insights": (
        "revenue dashboard",
        "cohort report",
        "CSV export",
        "conversion funnel",
        "forecast chart",
        "daily digest e-mail",
        "returns report",
        "data retention job",
        "KPI tiles",
        "date pickers",
        "merchant segments",
        "query cache",
    ),
}
STORY_VERBS = ("Add", "Show", "Support", "Improve", "Validate", "Redesign", "Speed up", "Localise", "Track")
FEATURE_WORDS = ("Faster", "Smarter", "Simpler", "Safer", "Self-service", "Bulk", "Scheduled", "Guided")
DEFECT_WORDS = ("crashes on", "shows wrong", "times out in", "loses", "double-counts", "mis-aligns")
DEBT_WORDS = ("Remove legacy", "Upgrade the library behind", "Split the module of", "Add tests for")
RISK_WORDS = ("Rotate certificates for", "Pen-test findings in", "GDPR review of", "Dependency CVE in")
COMMIT_VERBS = ("add", "fix", "refactor", "test", "wire up", "polish", "rename", "handle errors in")
CHORES = ("Bump dependencies", "Update CI image", "Fix flaky test", "Tidy imports", "Update README")
ACCOUNTS = (
    "Northwind Traders",
    "Globex",
    "Initech",
    "Umbrella Retail",
    "Stark Outfitters",
    "Wayne Grocers",
    "Hooli Market",
    "Vandelay Imports",
    "Soylent Foods",
    "Cyberdyne Parts",
    "Tyrell Fashion",
    "Acme Garden",
    "Monarch Books",
    "Pied Piper Audio",
    "Wonka Sweets",
    "Gringotts Jewels",
    "Oceanic Travel",
    "Dunder Paper",
    "Sterling Home",
    "Bluth Homes",
    "Gekko Finance",
    "Prestige Wines",
    "Nakatomi Tech",
    "Virtucon Toys",
    "Duff Beverages",
    "Krusty Meals",
    "Ollivander Crafts",
    "Spacely Sprockets",
)
PEOPLE = (
    "Ada",
    "Ben",
    "Chiara",
    "Dmitri",
    "Eva",
    "Farid",
    "Greta",
    "Hiro",
    "Ines",
    "Jonas",
    "Kemal",
    "Lena",
    "Mateo",
    "Nora",
    "Omar",
    "Petra",
    "Quentin",
    "Rosa",
    "Sven",
    "Tara",
    "Uwe",
    "Vera",
    "Wen",
    "Yusuf",
)
PARTNER_PEOPLE = ("Anil", "Bianca", "Chen", "Dana", "Emre", "Fatima")


def person_email(name: str, partner: bool = False) -> str:
    return f"{name.lower()}@{'acme-outsourcing.example' if partner else 'brightcart.example'}"


# The generator ---------------------------------------------------------------------------------------------


class _Generator:
    def __init__(self, seed: int, size: WorldSize, now: datetime):
        self.seed = seed
        self.rng = random.Random(seed)  # noqa: S311 (a simulation, not cryptography)
        self.size = size
        self.now = now.astimezone(UTC).replace(microsecond=0)
        self.start = at_work(self.rng, self.now - timedelta(days=HISTORY_DAYS))
        frozen = self.now
        self.fakes = make_fakes(lambda: frozen)
        self.issues: list[IssuePlan] = []
        self.commits: dict[str, list[CommitPlan]] = defaultdict(list)  # by repo
        self.pull_requests: list[tuple[IssuePlan, str]] = []  # (story, repo)
        self.features: list[FeaturePlan] = []
        self.tickets: list[TicketPlan] = []
        self.members: dict[str, list[str]] = {}  # project -> member emails
        self.chains: list[Chain] = []

    # Setup ------------------------------------------------------------------------------------------------

    def setup(self) -> None:
        targetprocess: FakeTargetprocess = self.fakes["targetprocess"]
        for product in PRODUCTS:  # first: their ids are fixed (tp_project_id)
            project = targetprocess.add_project(product.name, product.slug[:3].upper(), created=self.start)
            if project != tp_project_id(product):
                raise RuntimeError("the Targetprocess projects must be the first entities of the world")
        people = itertools.cycle(PEOPLE)
        jira, partner_jira = self.fakes["jira"], self.fakes["jira-acme"]
        for product, teams in products_of(self.size):
            self.fakes["github"].add_repo(product.repo)
            jenkins: FakeJenkins = self.fakes["jenkins"]
            jenkins.add_folder(product.slug)
            for job in (product.ci_job, product.release_job, product.deploy_job):
                jenkins.add_job(job, "pipeline")
            for team in teams:
                if team.partner:
                    names = list(PARTNER_PEOPLE)
                    fake, statuses, types = partner_jira, PARTNER_STATUSES, PARTNER_ISSUE_TYPES
                else:
                    names = [next(people) for _ in range(4)]
                    fake, statuses, types = jira, IN_HOUSE, IN_HOUSE_ISSUE_TYPES
                fake.add_project(
                    team.project, f"{product.name} {team.name}", statuses.categories(), None, types
                )
                emails = [person_email(name, team.partner) for name in names]
                for name, email in zip(names, emails, strict=True):
                    fake.add_user(email, f"token-{name.lower()}", display_name=name)
                    if not self.fakes["github"]._find_user(name.lower()):
                        self.fakes["github"].add_user(name.lower(), f"token-{name.lower()}", name=name)
                self.members[team.project] = emails
        salesforce: FakeSalesforce = self.fakes["salesforce"]
        salesforce.add_field(
            salesforce.request_object, REQUEST_PRODUCT_FIELD, values=[p.name for p in PRODUCTS]
        )
        zendesk: FakeZendesk = self.fakes["zendesk"]
        for account in ACCOUNTS:
            salesforce.add_account(account, created=self.start - timedelta(days=400))
            organization = zendesk.add_organization(account)
            zendesk.add_user(
                f"{account} buyer",
                f"buyer@{account.split()[0].lower()}.example",
                organization=organization.id,
            )

    # Plans ------------------------------------------------------------------------------------------------

    def weeks(self) -> Iterable[datetime]:
        monday = (
            self.start.astimezone(ZONE) - timedelta(days=self.start.astimezone(ZONE).weekday())
        ).replace(hour=9, minute=0, second=0)
        while monday < self.now:
            yield monday.astimezone(UTC)
            monday += timedelta(days=7)

    def review_median(self, product: ProductPlan, at: datetime) -> float:
        """Days an item waits for a reviewer: in the bottleneck product it grows over the last quarter."""
        if not product.review_bottleneck:
            return 0.7
        ramp = (at - (self.now - timedelta(days=BOTTLENECK_SINCE_DAYS))) / timedelta(days=21)
        return 0.7 + 13.0 * min(1.0, max(0.0, ramp))

    def work_moves(
        self, product: ProductPlan, team: TeamPlan, created: datetime, pickup: datetime, kind: str
    ) -> list[Move]:
        """A story's (or defect's, debt item's) way through its team's workflow, uncut."""
        rng, s = self.rng, PARTNER_STATUSES if team.partner else IN_HOUSE
        slow = 1.9 if team.partner else 1.0
        path = _Path(rng, s.new, created)
        if rng.random() < 0.05:  # dropped before anyone started
            path.go(s.cancelled, pickup - created + lognormal_days(rng, 3))
            return path.moves
        active_median = {"story": 2.2, "defect": 1.0, "debt": 2.5}[kind] * slow
        path.go(s.active, pickup - created)
        if rng.random() < (0.3 if team.partner else 0.12):
            path.go(s.blocked, lognormal_days(rng, active_median / 2))
            path.go(s.active, lognormal_days(rng, 3.0 * slow))
        if rng.random() < 0.03:  # started, then given up
            path.go(s.cancelled, lognormal_days(rng, active_median))
            return path.moves
        rounds = 2 if rng.random() < 0.2 else 1  # a review sends it back now and then
        for round_number in range(rounds):
            path.go(s.ready, lognormal_days(rng, active_median if round_number == 0 else 0.8))
            wait = self.review_median(product, path.at) * (3.0 if team.partner else 1.0)
            if s.review:
                path.go(s.review, lognormal_days(rng, wait, 0.7))
                after_review = lognormal_days(rng, 0.15, 0.6)
            else:
                after_review = lognormal_days(rng, wait, 0.7)
            path.go(s.active if round_number < rounds - 1 else s.done, after_review)
        if rng.random() < 0.05:  # reopened: it was not done after all
            path.go(s.active, lognormal_days(rng, 6))
            path.go(s.ready, lognormal_days(rng, 1))
            path.go(s.done, lognormal_days(rng, self.review_median(product, path.at)))
        return path.moves

    def plan_commits(self, product: ProductPlan, team: TeamPlan, issue: IssuePlan, mean: float) -> None:
        statuses = PARTNER_STATUSES if team.partner else IN_HOUSE
        spans = [
            (start, min(end, self.now))
            for start, end in _active_spans(issue.moves, statuses.active, self.now)
            if start < self.now
        ]
        if not spans:
            return
        count = 1 + int(self.rng.expovariate(1 / max(0.01, mean - 1))) if mean > 1 else 1
        authors = self.members[team.project]
        author = self.rng.choice(authors).split("@")[0]
        nouns = NOUNS[product.slug]
        for _ in range(min(count, 25)):
            start, end = self.rng.choice(spans)
            if end <= start:
                continue
            commit = CommitPlan(
                product.repo,
                _weekday_moment(self.rng, start, end),
                f"{{key}} {self.rng.choice(COMMIT_VERBS)} {self.rng.choice(nouns)}",
                author,
            )
            issue.commits.append(commit)
            self.commits[product.repo].append(commit)

    def add_issue(self, issue: IssuePlan) -> IssuePlan:
        self.issues.append(issue)
        return issue

    def plan_product(self, product: ProductPlan, teams: list[TeamPlan]) -> None:
        rng, size = self.rng, self.size
        nouns = NOUNS[product.slug]
        in_house = [team for team in teams if not team.partner]
        partner_team = next((team for team in teams if team.partner), None)
        mean_per_epic = sum(size.stories_per_epic) / 2
        for week in self.weeks():
            # Features: each an epic in one in-house team's project, some of its stories for the partner.
            for team in in_house:
                for _ in range(poisson(rng, size.stories_per_team_week / mean_per_epic)):
                    self.plan_feature(product, team, partner_team, week)
            for team in teams:
                for kind, rate in (
                    ("defect", size.defects_per_team_week),
                    ("debt", size.debt_per_team_week),
                    ("risk", 0 if team.partner else size.risks_per_team_week),
                ):
                    for _ in range(poisson(rng, rate)):
                        created = at_work(rng, week + timedelta(days=rng.random() * 5))
                        self.plan_work_item(product, team, kind, created, f"{rng.choice(nouns)}")
            for _ in range(poisson(rng, size.tickets_per_product_week)):
                self.plan_ticket(product, in_house, at_work(rng, week + timedelta(days=rng.random() * 7)))
            for _ in range(poisson(rng, size.chore_commits_per_week)):
                at = _weekday_moment(rng, week, min(self.now, week + timedelta(days=5)))
                self.commits[product.repo].append(
                    CommitPlan(
                        product.repo,
                        at,
                        rng.choice(CHORES),
                        rng.choice(self.members[in_house[0].project]).split("@")[0],
                    )
                )

    def plan_feature(
        self, product: ProductPlan, team: TeamPlan, partner_team: TeamPlan | None, week: datetime
    ) -> None:
        rng, size = self.rng, self.size
        origin = rng.random()
        requested = at_work(rng, week + timedelta(days=rng.random() * 5))
        feature = FeaturePlan(
            product, "", requested, f"{rng.choice(FEATURE_WORDS)} {rng.choice(NOUNS[product.slug])}"
        )
        if origin < size.requests_share:
            feature.source = "salesforce"
            planned = at_work(rng, requested + lognormal_days(rng, 12, 0.6))
        elif origin < size.requests_share + size.internal_share:
            feature.source = "targetprocess"
            planned = at_work(rng, requested + lognormal_days(rng, 5, 0.6))
        else:
            planned = requested
        self.features.append(feature)
        if planned >= self.now:
            return  # asked for, not planned yet
        if feature.source == "salesforce" and rng.random() < 0.15:
            feature.declined = True
            return
        feature.epic = self.add_issue(
            IssuePlan(
                "jira",
                team.project,
                "Epic",
                feature.name,
                planned,
                [],
                author=rng.choice(self.members[team.project]),
                priority=rng.choice(("High", "Medium")),
            )
        )
        low, high = size.stories_per_epic
        backlog_start = planned + lognormal_days(rng, 7, 0.5)
        for index in range(rng.randint(low, high)):
            owner = partner_team if partner_team is not None and rng.random() < 0.35 else team
            created = at_work(rng, planned + timedelta(hours=rng.random() * 48))
            pickup = at_work(rng, backlog_start + timedelta(days=index * rng.uniform(0.5, 3.0)))
            summary = f"{rng.choice(STORY_VERBS)} {rng.choice(NOUNS[product.slug])} ({feature.name.lower()})"
            feature.stories.append(
                self.plan_work_item(
                    product, owner, "story", created, summary, pickup=pickup, epic=feature.epic
                )
            )
        feature.epic.moves = self.epic_moves(feature.epic, feature.stories)

    def epic_moves(self, epic: IssuePlan, children: list[IssuePlan]) -> list[Move]:
        started = [
            child.moves[0][0]
            for child in children
            if child.moves and child.moves[0][2] in (IN_HOUSE.active, PARTNER_STATUSES.active)
        ]
        moves: list[Move] = []
        if not started:
            return moves
        moves.append((min(started), IN_HOUSE.new, IN_HOUSE.delivering))
        finals = [child.moves[-1] if child.moves else None for child in children]
        if all(
            final is not None
            and final[2]
            in (IN_HOUSE.done, IN_HOUSE.cancelled, PARTNER_STATUSES.done, PARTNER_STATUSES.cancelled)
            for final in finals
        ):
            last = max(final[0] for final in finals)
            any_done = any(final[2] in (IN_HOUSE.done, PARTNER_STATUSES.done) for final in finals)
            end = at_work(self.rng, last + lognormal_days(self.rng, 1.0))
            moves.append(
                (
                    max(end, moves[-1][0]),
                    IN_HOUSE.delivering,
                    IN_HOUSE.done if any_done else IN_HOUSE.cancelled,
                )
            )
        return moves

    def plan_work_item(
        self,
        product: ProductPlan,
        team: TeamPlan,
        kind: str,
        created: datetime,
        subject: str,
        *,
        pickup: datetime | None = None,
        epic: IssuePlan | None = None,
    ) -> IssuePlan:
        rng = self.rng
        statuses = PARTNER_STATUSES if team.partner else IN_HOUSE
        if pickup is None:
            pickup = at_work(
                rng, created + lognormal_days(rng, {"defect": 2, "debt": 12, "risk": 10}.get(kind, 6))
            )
        if kind == "risk":
            path = _Path(rng, statuses.new, created)
            path.go(statuses.active, pickup - created)
            path.go(statuses.done, lognormal_days(rng, 9, 1.0))
            moves = path.moves
        else:
            moves = self.work_moves(product, team, created, pickup, "story" if kind == "story" else kind)
        summary = {
            "story": subject,
            "defect": f"{subject.capitalize()} {rng.choice(DEFECT_WORDS)} {rng.choice(NOUNS[product.slug])}",
            "debt": f"{rng.choice(DEBT_WORDS)} {subject}",
            "risk": f"{rng.choice(RISK_WORDS)} {subject}",
        }[kind]
        issue = self.add_issue(
            IssuePlan(
                "jira-acme" if team.partner else "jira",
                team.project,
                {"story": "Story", "defect": "Bug", "debt": "Story", "risk": "Risk"}[kind],
                summary[:250],
                created,
                moves,
                labels=[DEBT_LABEL] if kind == "debt" else [],
                parent=epic if epic is not None and not team.partner else None,
                client_epic=epic if epic is not None and team.partner else None,
                author=rng.choice(self.members[team.project]),
                priority=rng.choice(("Highest", "High", "Medium", "Medium", "Low"))
                if kind == "defect"
                else "Medium",
            )
        )
        if kind != "risk":
            mean = self.size.commits_per_story * (0.6 if kind == "defect" else 0.9 if kind == "debt" else 1.0)
            self.plan_commits(product, team, issue, mean)
            if issue.first(statuses.ready) is not None and issue.commits:
                self.pull_requests.append((issue, product.repo))
        return issue

    def plan_ticket(self, product: ProductPlan, teams: list[TeamPlan], created: datetime) -> None:
        rng = self.rng
        account = rng.choice(ACCOUNTS)
        subject = _ticket_subject(rng, product)
        priority = rng.choice(("low", "normal", "normal", "high", "urgent"))
        ticket = TicketPlan(product, subject, account, created, priority)
        path = _Path(rng, "new", created)
        path.go("open", lognormal_days(rng, 0.2))
        if rng.random() < 0.25:  # engineering must fix it: a bug in a team's Jira
            team = rng.choice(teams)
            escalated = at_work(rng, path.at + lognormal_days(rng, 1.0))
            ticket.defect = self.plan_work_item(
                product, team, "defect", escalated, subject.split()[0].lower()
            )
            path.go("hold", escalated - path.at)
            fixed = ticket.defect.done_at(IN_HOUSE)
            if fixed is not None:
                path.at = max(path.at, fixed)
                path.go("open", timedelta(hours=2))
                path.go("solved", lognormal_days(rng, 0.5))
                path.go("closed", timedelta(days=4))
        else:
            if rng.random() < 0.3:
                path.go("pending", lognormal_days(rng, 0.5))
                path.go("open", lognormal_days(rng, 2))
            path.go("solved", lognormal_days(rng, 1.0))
            path.go("closed", timedelta(days=4))
        ticket.moves = path.moves
        self.tickets.append(ticket)

    # Into the tools -----------------------------------------------------------------------------------------

    def write_jira(self) -> None:
        for issue in sorted(self.issues, key=lambda i: (i.created, i.issue_type != "Epic")):
            if issue.created >= self.now:
                continue
            fake: FakeJira = self.fakes[issue.fake]
            statuses = PARTNER_STATUSES if issue.fake == "jira-acme" else IN_HOUSE
            labels = list(issue.labels)
            if issue.client_epic is not None and issue.client_epic.key:
                labels.append(issue.client_epic.key)  # the client's epic, for the link rule
            moves = _cut(issue.moves, self.now)
            issue.key = fake.add_issue(
                issue.project,
                issue.issue_type,
                issue.summary,
                status=moves[-1][2] if moves else statuses.new,
                created=issue.created,
                fields={"labels": labels, "priority": {"name": issue.priority}},
                histories=[(at, before, after, issue.author) for at, before, after in moves],
                parent=issue.parent.key if issue.parent is not None and issue.parent.key else None,
                reporter=issue.author,
            )
            issue.moves = moves
            for commit in issue.commits:
                commit.message = commit.message.replace("{key}", issue.key)

    def write_code(self) -> dict[str, list[tuple[str, datetime]]]:
        """Commits in time order with their pull requests; returns each repo's (sha, at) history."""
        github: FakeGitHub = self.fakes["github"]
        merges: dict[str, list[tuple[datetime, IssuePlan]]] = defaultdict(list)
        open_pulls: list[tuple[IssuePlan, str]] = []
        for issue, repo in self.pull_requests:
            statuses = PARTNER_STATUSES if issue.fake == "jira-acme" else IN_HOUSE
            if not issue.key:
                continue
            done = issue.first(statuses.done)
            if done is not None and done <= self.now:
                merges[repo].append((done, issue))
            elif (issue.first(statuses.ready) or self.now) <= self.now:
                open_pulls.append((issue, repo))
        history: dict[str, list[tuple[str, datetime]]] = {}
        for product in PRODUCTS:
            repo = product.repo
            if repo.lower() not in github.repos:
                continue
            events = [
                (c.at, 0, index, c)
                for index, c in enumerate(self.commits[repo])
                if c.at <= self.now and "{key}" not in c.message
            ]
            events += [(at, 1, index, issue) for index, (at, issue) in enumerate(merges[repo])]
            events.sort(key=lambda event: event[:3])
            head, last_at, shas = None, None, []
            for at, kind, _, payload in events:
                if last_at is not None and at <= last_at:
                    at = last_at + timedelta(seconds=1)
                last_at = at
                if kind == 0:
                    payload.at = at
                    payload.sha = github.add_commit(
                        repo, payload.message, author=payload.author, at=at, parents=[head] if head else []
                    )
                    head = payload.sha
                else:
                    issue = payload
                    key = github.add_pull(
                        repo,
                        f"{issue.key} {issue.summary}"[:250],
                        head=f"feature/{issue.key.lower()}",
                        commits=[c.sha for c in issue.commits if c.sha],
                        user=issue.commits[0].author if issue.commits else None,
                        created=issue.first(
                            (PARTNER_STATUSES if issue.fake == "jira-acme" else IN_HOUSE).ready
                        ),
                        events=[(at, "merged", issue.commits[0].author if issue.commits else None)],
                    )
                    head = github.repos[repo.lower()].issues[int(key.rsplit("#", 1)[1])].merge_commit_sha
                shas.append((head, at))
            history[repo] = shas
        for issue, repo in open_pulls:
            shas = [c.sha for c in issue.commits if c.sha]
            statuses = PARTNER_STATUSES if issue.fake == "jira-acme" else IN_HOUSE
            if shas:
                github.add_pull(
                    repo,
                    f"{issue.key} {issue.summary}"[:250],
                    head=f"feature/{issue.key.lower()}",
                    commits=shas,
                    user=issue.commits[0].author,
                    created=issue.first(statuses.ready),
                )
        return history

    def write_builds(
        self, history: dict[str, list[tuple[str, datetime]]]
    ) -> dict[str, tuple[str, str, datetime]]:
        """CI builds per push, weekly releases and deployments; each commit -> (release build, deployment,
        deployed at) of the first successful production deployment that shipped it."""
        jenkins: FakeJenkins = self.fakes["jenkins"]
        github: FakeGitHub = self.fakes["github"]
        rng = self.rng
        messages = {c.sha: c for repo in self.commits.values() for c in repo if c.sha}
        shipped: dict[str, tuple[str, str, datetime]] = {}
        for product in PRODUCTS:
            commits = history.get(product.repo)
            if commits is None:
                continue

            def change(sha: str) -> dict[str, Any]:
                plan = messages.get(sha)
                return {
                    "id": sha,
                    "message": plan.message if plan else "Merge pull request",
                    "author": plan.author if plan else "github",
                }

            # CI: a push is a run of commits close together; each push builds.
            push: list[tuple[str, datetime]] = []
            for index, (sha, at) in enumerate(commits):
                push.append((sha, at))
                following = commits[index + 1][1] if index + 1 < len(commits) else None
                if following is None or following - at > timedelta(hours=3) or len(push) >= 6:
                    started = at + timedelta(minutes=rng.randint(1, 6))
                    if started <= self.now:
                        jenkins.add_build(
                            product.ci_job,
                            started=started,
                            duration=timedelta(minutes=rng.uniform(4, 14)),
                            result=rng.choices(("SUCCESS", "FAILURE", "UNSTABLE"), (90, 7, 3))[0],
                            commits=[change(s) for s, _ in push],
                            revision=push[-1][0],
                        )
                    push = []
            # Weekly: a release build of what is new since the last one, deployed to production.
            position = 0
            for week in self.weeks():
                day = (week.astimezone(ZONE) + timedelta(days=product.deploy_weekday)).replace(
                    hour=13, minute=30
                )
                built_at = day.astimezone(UTC)
                if built_at > self.now - timedelta(hours=1):
                    break
                batch = []
                while position < len(commits) and commits[position][1] < built_at:
                    batch.append(commits[position][0])
                    position += 1
                if not batch:
                    continue
                release = jenkins.add_build(
                    product.release_job,
                    started=built_at,
                    duration=timedelta(minutes=rng.uniform(15, 25)),
                    commits=[change(sha) for sha in batch],
                    revision=batch[-1],
                )
                release_number = int(release.rsplit("#", 1)[1])
                deploy_at = built_at + timedelta(minutes=30)
                attempts = [deploy_at]
                if rng.random() < 0.1:  # failed: run again the next morning
                    attempts.append(
                        at_work(rng, (deploy_at.astimezone(ZONE) + timedelta(days=1)).replace(hour=9))
                    )
                deployment = ""
                for attempt, at in enumerate(attempts):
                    if at > self.now:
                        break
                    failed = attempt < len(attempts) - 1
                    deployment = jenkins.add_build(
                        product.deploy_job,
                        started=at,
                        duration=timedelta(minutes=rng.uniform(3, 8)),
                        result="FAILURE" if failed else "SUCCESS",
                        upstream=(product.release_job, release_number),
                        parameters={"ENVIRONMENT": "production"},
                    )
                    if not failed:
                        local = at.astimezone(ZONE)
                        tag = f"{product.slug}-{local:%Y.%m.%d}"
                        github.add_release(
                            product.repo,
                            tag,
                            target_commitish=batch[-1],
                            name=f"{product.name} {local:%Y-%m-%d}",
                            created=at,
                        )
                        for sha in batch:
                            shipped[sha] = (release, deployment, at)
        return shipped

    def write_portfolio(self, shipped: dict[str, tuple[str, str, datetime]]) -> None:
        """Targetprocess features and requests, Salesforce requests, with the chains they start."""
        rng = self.rng
        targetprocess: FakeTargetprocess = self.fakes["targetprocess"]
        salesforce: FakeSalesforce = self.fakes["salesforce"]
        for feature in sorted(self.features, key=lambda f: f.requested):
            if feature.requested >= self.now:
                continue
            product, epic = feature.product, feature.epic
            project = tp_project_id(product)
            feature_id = None
            delivered = chain = None
            if epic is not None and epic.key:
                path = [(epic.created, "Planned")]
                started = epic.first(IN_HOUSE.delivering)
                if started is not None:
                    path.append((started, "In Progress"))
                done = epic.first(IN_HOUSE.done)
                if done is not None:
                    path.append((done, "Done"))
                feature_id = targetprocess.add_item(
                    "Feature",
                    feature.name,
                    project=project,
                    created=epic.created - timedelta(hours=2),
                    history=[(at, state) for at, state in path if at <= self.now],
                    custom_fields={TP_EPIC_FIELD: epic.key},
                    effort=float(len(feature.stories) * 3),
                )
                if done is not None:
                    delivered, chain = self.delivery(feature, shipped)
            if feature.source == "targetprocess" and feature_id is not None:
                request_path = [(feature.requested + timedelta(hours=3), "Open")]
                if delivered is not None:
                    request_path.append((delivered, "Done"))
                elif epic is not None and epic.first(IN_HOUSE.delivering):
                    request_path.append((epic.first(IN_HOUSE.delivering), "In Progress"))
                request_id = targetprocess.add_item(
                    "Request",
                    f"Idea: {feature.name.lower()}",
                    project=project,
                    created=feature.requested,
                    history=[(at, state) for at, state in sorted(request_path) if at <= self.now],
                )
                targetprocess.relate(request_id, feature_id, "Relation", at=epic.created)
            if feature.source != "salesforce":
                continue
            requested = feature.requested
            moves = [(at_work(rng, requested + lognormal_days(rng, 2)), "New", "Under Review")]
            if feature.declined:
                moves.append(
                    (at_work(rng, moves[-1][0] + lognormal_days(rng, 8)), "Under Review", "Declined")
                )
            elif epic is not None:
                moves.append(
                    (max(epic.created, moves[-1][0] + timedelta(hours=1)), "Under Review", "Planned")
                )
                started = epic.first(IN_HOUSE.delivering)
                if started is not None:
                    moves.append((max(started, moves[-1][0]), "Planned", "In Development"))
                    if delivered is not None:
                        moves.append((max(delivered, moves[-1][0]), "In Development", "Delivered"))
            moves = _cut(moves, self.now)
            account = rng.choice(ACCOUNTS)
            key = salesforce.add_request(
                feature.name,
                status=moves[-1][2] if moves else "New",
                created=requested,
                account=account,
                amount=round(rng.lognormvariate(math.log(60_000), 1.0), -3),
                deal_breaker=rng.random() < 0.1,
                linked_item=f"TP-{feature_id}" if feature_id is not None else None,
                fields={
                    REQUEST_PRODUCT_FIELD: product.name,
                    "Priority__c": rng.choice(("High", "Medium", "Low")),
                },
                history=moves,
            )
            if chain is not None and moves and moves[-1][2] == "Delivered":
                self.chains.append(Chain(key, f"TP-{feature_id}", *chain))

    def delivery(
        self, feature: FeaturePlan, shipped: dict[str, tuple[str, str, datetime]]
    ) -> tuple[datetime | None, tuple[str, str, str, str, str] | None]:
        """When the last of the feature's done stories reached production, and one traced path there."""
        last, chain = None, None
        for story in feature.stories:
            statuses = PARTNER_STATUSES if story.fake == "jira-acme" else IN_HOUSE
            if story.done_at(statuses) is None:
                continue
            for commit in story.commits:
                if commit.sha not in shipped:
                    return None, None  # done, but not in production yet
                release, deployment, at = shipped[commit.sha]
                if last is None or at > last:
                    last = at
                if chain is None and story.fake == "jira":
                    chain = (feature.epic.key, story.key, commit.sha, release, deployment)
        return last, chain

    def write_tickets(self) -> None:
        zendesk: FakeZendesk = self.fakes["zendesk"]
        for ticket in sorted(self.tickets, key=lambda t: t.created):
            if ticket.created >= self.now:
                continue
            moves = _cut(ticket.moves, self.now)
            defect = ticket.defect
            zendesk.add_ticket(
                ticket.subject,
                type="incident" if defect is not None else "question",
                priority=ticket.priority,
                status=moves[-1][2] if moves else "new",
                requester=f"buyer@{ticket.account.split()[0].lower()}.example",
                tags=[ticket.product.slug],
                jira_key=defect.key if defect is not None and defect.key else None,
                created=ticket.created,
                history=moves,
            )

    def run(self) -> World:
        self.setup()
        for product, teams in products_of(self.size):
            self.plan_product(product, teams)
        self.write_jira()
        history = self.write_code()
        shipped = self.write_builds(history)
        self.write_portfolio(shipped)
        self.write_tickets()
        return World(self.seed, self.size, self.now, self.fakes, self.chains)


def make_fakes(now: Callable[[], datetime] | None = None) -> dict[str, FakeApp]:
    """Empty fakes of the world, by the prefix they are served under; `now` is their clock."""
    salesforce = FakeSalesforce(now=now)
    salesforce.reset(daily_limit=10_000_000)  # the demo syncs every few seconds, all day long
    return {
        "jira": FakeJira(flavour="cloud", time_zone=ZONE_NAME, now=now),
        "jira-acme": FakeJira(flavour="datacenter", time_zone=ZONE_NAME, now=now),
        "github": FakeGitHub(now=now),
        "jenkins": FakeJenkins(now=now),
        "salesforce": salesforce,
        "targetprocess": FakeTargetprocess(time_zone=ZONE_NAME, now=now),
        "zendesk": FakeZendesk(subdomain="brightcart", now=now),
    }


def world_generate(seed: int = DEFAULT_SEED, size: str = "small", now: datetime = DEFAULT_NOW) -> World:
    """The demo world: fresh fakes holding a year of history up to `now`, the same for the same seed.

    The fakes' clocks stand still at `now`; live mode sets them going (`fakes_use_clock`).
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, not {size!r}")
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    return _Generator(seed, SIZES[size], now).run()


def fakes_use_clock(fakes: dict[str, FakeApp], now: Callable[[], datetime]) -> None:
    """Set every fake's clock (what it stamps on changes made without an explicit instant)."""
    for fake in fakes.values():
        with fake.lock:
            fake.now = fake._configured_now = now


# What the connectors will find ---------------------------------------------------------------------------


def world_keys(fakes: dict[str, FakeApp]) -> dict[str, set[str]]:
    """The key of every item each fake holds that the demo's scopes read, by fake name."""
    github: FakeGitHub = fakes["github"]
    jenkins: FakeJenkins = fakes["jenkins"]
    salesforce: FakeSalesforce = fakes["salesforce"]
    targetprocess: FakeTargetprocess = fakes["targetprocess"]
    keys: dict[str, set[str]] = {
        "jira": set(fakes["jira"].issues),
        "jira-acme": set(fakes["jira-acme"].issues),
        "github": set(),
        "jenkins": set(),
        "salesforce": {
            salesforce.records[record_id]["Name"]
            for record_id in salesforce.by_type[salesforce.request_object]
        },
        "targetprocess": {
            f"TP-{entity.id}"
            for entity in targetprocess.entities.values()
            if entity.entity_type in ("Feature", "Request")
        },
        "zendesk": {f"#{ticket.id}" for ticket in fakes["zendesk"].tickets.values() if not ticket.deleted},
    }
    for repo in github.repos.values():
        keys["github"] |= set(repo.commits)
        keys["github"] |= {
            f"{repo.full_name}#{number}" for number, issue in repo.issues.items() if issue.is_pull
        }
        keys["github"] |= {release.tag_name for release in repo.releases}

    def walk(node) -> None:
        for child in node.children.values():
            if child.is_job:
                keys["jenkins"] |= {f"{child.full_name} #{number}" for number in child.builds}
            else:
                walk(child)

    walk(jenkins.root)
    return keys


# Live mode --------------------------------------------------------------------------------------------------


def _products_in(fakes: dict[str, FakeApp]) -> list[ProductPlan]:
    """The products of this world (a small one has fewer): those with a repository."""
    return [product for product in PRODUCTS if product.repo.lower() in fakes["github"].repos]


def _product_of_project(project: str) -> ProductPlan:
    for product in PRODUCTS:
        if any(team.project == project for team in product.teams):
            return product
    return next(product for product in PRODUCTS if product.slug == PARTNER.product)


LIVE_MOVE_CHANCE = 0.012  # per open item and tick
LIVE_STORIES_PER_TICK = 0.25


def _movable(statuses: Statuses, status: str) -> bool:
    return status in (statuses.new, statuses.active, statuses.blocked, statuses.ready, statuses.review)


def _forward(statuses: Statuses, status: str, rng: random.Random) -> str | None:
    """Where an item goes next from `status`; now and then backwards, as real work does."""
    if status == statuses.new:
        return statuses.active if rng.random() < 0.9 else statuses.cancelled
    if status == statuses.active:
        return statuses.ready if rng.random() < 0.8 else statuses.blocked
    if status == statuses.blocked:
        return statuses.active
    if status == statuses.ready:
        return statuses.review or (statuses.done if rng.random() < 0.85 else statuses.active)
    if status == statuses.review:
        return statuses.done if rng.random() < 0.85 else statuses.active
    return None


def _ticket_subject(rng: random.Random, product: ProductPlan) -> str:
    return f"{rng.choice(NOUNS[product.slug]).capitalize()} {rng.choice(DEFECT_WORDS)} our orders"


def tick(rng: random.Random, fakes: dict[str, FakeApp], now: datetime) -> list[str]:
    """One step of the simulated teams at `now`: a few items move (with their commits and CI builds),
    requests and tickets arrive now and then, and now and then a product ships. Returns what happened."""
    now = now.astimezone(UTC).replace(microsecond=0)
    happened: list[str] = []
    github: FakeGitHub = fakes["github"]
    jenkins: FakeJenkins = fakes["jenkins"]
    for name, statuses in (("jira", IN_HOUSE), ("jira-acme", PARTNER_STATUSES)):
        jira: FakeJira = fakes[name]
        with jira.lock:
            movable = sorted(
                (issue.project.key, issue.number, issue.key)
                for issue in jira.issues.values()
                if issue.issue_type.name in ("Story", "Bug") and _movable(statuses, issue.status)
            )
        # Each open item moves now and then: what finishes grows with what is open, so the work in progress
        # settles where it finishes as fast as new stories arrive.
        moves = poisson(rng, LIVE_MOVE_CHANCE * len(movable) * (1 if name == "jira" else 0.6))
        for _, _, key in rng.sample(movable, min(len(movable), moves)):
            issue = jira.issues[key]
            product = _product_of_project(issue.project.key)
            if product.review_bottleneck and issue.status == statuses.ready and rng.random() < 0.8:
                continue  # still nobody to review it
            target = _forward(statuses, issue.status, rng)
            if target is None or target == issue.status:
                continue
            jira.transition(key, target, at=now)
            happened.append(f"{key} {issue.status}")
            if target in (statuses.ready, statuses.done) and product.repo.lower() in github.repos:
                sha = github.add_commit(
                    product.repo,
                    f"{key} {rng.choice(COMMIT_VERBS)} {rng.choice(NOUNS[product.slug])}",
                    at=now,
                )
                jenkins.add_build(
                    product.ci_job,
                    started=now,
                    duration=timedelta(minutes=rng.uniform(4, 12)),
                    commits=[{"id": sha, "message": f"{key} work"}],
                    revision=sha,
                )
                happened.append(f"commit {sha[:7]} and a CI build of {product.slug}")
            if issue.parent:
                _follow_epic(jira, issue.parent, now, happened)
    products = _products_in(fakes)
    if rng.random() < LIVE_STORIES_PER_TICK:
        happened += _new_story(rng, fakes, now)
    if rng.random() < 0.25:
        product = rng.choice(products)
        key = fakes["salesforce"].add_request(
            f"{rng.choice(FEATURE_WORDS)} {rng.choice(NOUNS[product.slug])}",
            created=now,
            account=rng.choice(ACCOUNTS),
            amount=round(rng.lognormvariate(math.log(60_000), 1.0), -3),
            deal_breaker=rng.random() < 0.1,
            fields={REQUEST_PRODUCT_FIELD: product.name},
        )
        happened.append(f"request {key} for {product.name}")
    if rng.random() < 0.25:
        product = rng.choice(products)
        account = rng.choice(ACCOUNTS)
        # Now and then support sees it is a bug: tagged for engineering, the integration makes it a Jira bug.
        escalated = [ESCALATION_TAG] if rng.random() < ESCALATION_SHARE else []
        ticket = fakes["zendesk"].add_ticket(
            _ticket_subject(rng, product),
            requester=f"buyer@{account.split()[0].lower()}.example",
            tags=[product.slug, *escalated],
            created=now,
        )
        happened.append(f"ticket #{ticket} for {product.name}")
    if rng.random() < 0.1:
        happened += _ship(rng, fakes, rng.choice(products), now)
    return happened


def _new_story(rng: random.Random, fakes: dict[str, FakeApp], now: datetime) -> list[str]:
    """A new story under an open epic of a team (or, now and then, for the partner under a client's epic)."""
    jira: FakeJira = fakes["jira"]
    with jira.lock:
        epics = sorted(
            (issue.project.key, issue.number, issue.key)
            for issue in jira.issues.values()
            if issue.issue_type.name == "Epic" and issue.status in (IN_HOUSE.new, IN_HOUSE.delivering)
        )
    if not epics:
        return []
    project, _, epic = rng.choice(epics)
    product = _product_of_project(project)
    summary = f"{rng.choice(STORY_VERBS)} {rng.choice(NOUNS[product.slug])}"
    if (
        product.slug == PARTNER.product
        and rng.random() < 0.3
        and PARTNER.team.project in fakes["jira-acme"].projects
    ):
        key = fakes["jira-acme"].add_issue(
            PARTNER.team.project, "Story", summary, created=now, fields={"labels": [epic]}
        )
    else:
        key = jira.add_issue(project, "Story", summary, created=now, parent=epic)
    return [f"{key} new under {epic}"]


def _follow_epic(jira: FakeJira, epic_key: str, now: datetime, happened: list[str]) -> None:
    """An epic starts with its first story and is done with its last one."""
    with jira.lock:
        epic = jira.issues.get(epic_key)
        if epic is None:
            return
        categories = [
            jira.statuses[child.status].category for child in jira.issues.values() if child.parent == epic_key
        ]
        if epic.status == IN_HOUSE.new and any(category != "new" for category in categories):
            jira.transition(epic_key, IN_HOUSE.delivering, at=now)
            happened.append(f"{epic_key} {IN_HOUSE.delivering}")
        elif epic.status == IN_HOUSE.delivering and all(category == "done" for category in categories):
            jira.transition(epic_key, IN_HOUSE.done, at=now)
            happened.append(f"{epic_key} {IN_HOUSE.done}")


def _ship(rng: random.Random, fakes: dict[str, FakeApp], product: ProductPlan, now: datetime) -> list[str]:
    """A release build of the commits since the last one, its production deployment and the release."""
    github: FakeGitHub = fakes["github"]
    jenkins: FakeJenkins = fakes["jenkins"]
    with jenkins.lock:
        job = jenkins._job(product.release_job)
        last = max(job.builds.values(), key=lambda build: build.number, default=None)
        since = (
            datetime.fromtimestamp(last.started_ms / 1000, UTC)
            if last is not None
            else datetime.min.replace(tzinfo=UTC)
        )
    built_at = now - timedelta(minutes=20)  # the release build and the deployment end now
    with github.lock:
        repo = github.repos[product.repo.lower()]
        batch = sorted(
            (c for c in repo.commits.values() if since <= c.committed < built_at),
            key=lambda c: (c.committed, c.sha),
        )
    if not batch:
        return []
    release = jenkins.add_build(
        product.release_job,
        started=built_at,
        duration=timedelta(minutes=14),
        commits=[{"id": c.sha, "message": c.message} for c in batch],
        revision=batch[-1].sha,
    )
    number = int(release.rsplit("#", 1)[1])
    deployment = jenkins.add_build(
        product.deploy_job,
        started=now - timedelta(minutes=5),
        duration=timedelta(minutes=5),
        upstream=(product.release_job, number),
        parameters={"ENVIRONMENT": "production"},
    )
    tag = f"{product.slug}-{now.astimezone(ZONE):%Y.%m.%d-%H%M%S}"
    github.add_release(product.repo, tag, target_commitish=batch[-1].sha, created=now)
    return [f"{product.name} shipped {len(batch)} commits: {release}, {deployment}, {tag}"]


# State: canonical dump, save and load -------------------------------------------------------------------

# Attributes of a fake that are machinery, not tool state.
TRANSIENT = frozenset(
    {
        "lock",
        "now",
        "_configured_now",
        "router",
        "control",
        "requests",
        "writes",
        "faults",
        "_search_cache",
        "cursors",
        "tokens",
        "queries",
        "token_requests",
        "api_usage",
    }
)


def _canonical(value: Any, seen: frozenset[int] = frozenset()) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, ZoneInfo):
        return value.key
    if isinstance(value, itertools.count):
        return repr(value)
    if id(value) in seen:
        return "<cycle>"
    inner = seen | {id(value)}
    if is_dataclass(value):
        return {f.name: _canonical(getattr(value, f.name), inner) for f in fields(value)}
    if isinstance(value, dict):
        return {str(key): _canonical(item, inner) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(item, inner) for item in value]
    if isinstance(value, set | frozenset):
        return sorted((_canonical(item, inner) for item in value), key=repr)
    if hasattr(value, "pattern"):  # a compiled regex
        return value.pattern
    raise TypeError(f"cannot dump {type(value).__name__}")


def world_dump(fakes: dict[str, FakeApp]) -> bytes:
    """Every fake's state as canonical JSON: the same world gives the same bytes."""
    state = {
        name: {key: _canonical(value) for key, value in sorted(vars(fake).items()) if key not in TRANSIENT}
        for name, fake in sorted(fakes.items())
    }
    return json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def world_digest(fakes: dict[str, FakeApp]) -> str:
    return hashlib.sha256(world_dump(fakes)).hexdigest()


def _count_reduce(counter: itertools.count) -> tuple:
    # repr is "count(n)" for the counters the fakes use (whole numbers, step 1).
    return itertools.count, (int(repr(counter)[6:-1]),)


class _Pickler(pickle.Pickler):
    dispatch_table = {**copyreg.dispatch_table, itertools.count: _count_reduce}


def world_save(fakes: dict[str, FakeApp], path: Path) -> None:
    """Keep the fakes' state in a file (written whole, then moved into place). Each fake is pickled under
    its lock, so a fake serving requests meanwhile is kept as it stood at one instant."""
    state = {}
    for name, fake in fakes.items():
        buffer = io.BytesIO()
        with fake.lock:
            attributes = {key: value for key, value in vars(fake).items() if key not in TRANSIENT}
            _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(attributes)
        state[name] = (type(fake), buffer.getvalue())
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    with partial.open("wb") as file:
        pickle.dump(state, file, protocol=pickle.HIGHEST_PROTOCOL)
    partial.replace(path)


def world_load(path: Path, now: Callable[[], datetime] | None = None) -> dict[str, FakeApp]:
    """Fakes as `world_save` kept them, with fresh routes and `now` as their clock."""
    with path.open("rb") as file:
        state = pickle.load(file)  # noqa: S301 (our own file under var/, written by world_save)
    fakes = {}
    for name, (kind, attributes) in state.items():
        fake = kind(now=now)
        fake.restore(pickle.loads(attributes))  # noqa: S301 (as above)
        fakes[name] = fake
    return fakes
