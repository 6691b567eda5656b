"""Fuzzing every portal filter: no query string makes a page fail, and a refused value is said on the page.

Each page (and CSV export) is asked, as a staff user and as a partner user, for query strings made of the
parameters it reads: the fields of its filter form (read from the form class, so a new field is fuzzed
without touching this module) and the few it reads from the URL itself (the page number). The values are
the hostile ones (the ends of the calendar, ISO instants with offsets of up to ±23:59, unicode digits,
huge and non-finite numbers, empty, 10,000-character and control-character strings) mixed with plausible
valid ones, so the valid paths run too. Every answer is a page or a CSV (never a server error), or a 4xx;
every message of a refused value is shown on the page in an alert.

A random search hits a given value in a given parameter only by luck, so the likeliest to break a page
are also tried one by one, alone, in every parameter of every page. Two guards read the portal's code:
every URL is fuzzed here or reads no parameter, and every `request.GET` read is a fuzzed form or
parameter, so a new one cannot go unfuzzed.
"""

import importlib
import inspect
import itertools
import pkgutil
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from django import forms
from django.db import transaction
from django.urls import reverse
from django.utils.html import escape
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from metrics.services import product_rollups_rebuild
from tests.clients import portal_client_for
from tests.factories import (
    BASE_TIME,
    SECRET_ACCOUNT,
    ArtifactFactory,
    ArtifactLinkFactory,
    artifact_model,
    build_scope_world,
    flow_item,
)
from vsm import portal
from vsm.choices import FlowState, LinkKind
from vsm.portal import urls as portal_urls
from vsm.portal import views
from vsm.portal.forms import (
    DoneItemsForm,
    DoraForm,
    FlowFilterForm,
    ForecastForm,
    ItemAnalyzerForm,
    WindowForm,
)
from vsm.portal.requests import RequestFilterForm
from vsm.portal.trace import SearchForm

pytestmark = pytest.mark.django_db

# Per page and CSV export, as staff and as a partner: two requests an example. Tuned so the module runs
# in one to two minutes on two cores (about 70 s when the machine is otherwise idle).
EXAMPLES_PER_PAGE = 30


@dataclass(frozen=True)
class Page:
    """A portal URL (by name, with one or more sets of path arguments), the filter form its view builds
    from request.GET (None: none) and the parameters the view reads from request.GET itself."""

    url_name: str
    form: type[forms.Form] | None
    reads: tuple[str, ...] = ()
    path_args: tuple[tuple[str, ...], ...] = ((),)

    @property
    def parameters(self) -> list[str]:
        fields = list(self.form.base_fields) if self.form else []
        return fields + [name for name in self.reads if name not in fields]

    def urls(self) -> list[str]:
        return [reverse(f"portal:{self.url_name}", args=args) for args in self.path_args]


def _product_args(*tails: str) -> tuple[tuple[str, ...], ...]:
    return tuple(("granted", tail) for tail in tails) if tails else (("granted",),)


PAGES = [
    Page("home", WindowForm),
    Page("summary", WindowForm, path_args=_product_args()),
    Page("flow", FlowFilterForm, path_args=_product_args()),
    Page("flow-csv", FlowFilterForm, path_args=_product_args(*views.CHARTS, "no-such-chart")),
    Page("items", DoneItemsForm, reads=("page",), path_args=_product_args()),
    Page("bottlenecks", WindowForm, path_args=_product_args()),
    Page("bottlenecks-csv", WindowForm, path_args=_product_args("states", "statuses", "no-such-table")),
    Page("analyzer", ItemAnalyzerForm, reads=("page",), path_args=_product_args()),
    Page("dora", DoraForm, path_args=_product_args()),
    Page(
        "dora-csv",
        DoraForm,
        path_args=_product_args(
            "levels", "frequency", "lead_time", "failure_rate", "recovery", "deployments"
        ),
    ),
    Page("forecast", ForecastForm, path_args=_product_args()),
    Page("forecast-csv", ForecastForm, path_args=_product_args("forecast", "history")),
    Page("trace-search", SearchForm),
    Page("requests", RequestFilterForm, reads=("page",)),
    Page("product-requests", RequestFilterForm, reads=("page",), path_args=_product_args()),
    Page("requests-csv", RequestFilterForm),
    Page("product", None, reads=("page",), path_args=_product_args()),
]


# --- the values --------------------------------------------------------------------------------------

CALENDAR_ENDS = [
    "0001-01-01",
    "0001-01-02",
    "0001-12-31",
    "9999-12-30",
    "9999-12-31",
    "1969-12-31",
    "1970-01-01",
    "2999-12-31",
    "3000-01-01",
    "0000-00-00",
    "2026-02-30",
    "2026-13-01",
    "10000-01-01",
    "-0001-01-01",
]
EXTREME_OFFSETS = ["+14:00", "-14:00", "+23:59", "-23:59", "Z", "+00:00", "-00:00", "+24:00", "+1400", ""]
EXTREME_TIMES = ["00:00:00", "23:59:59", "23:59:59.999999", "00:00", "24:00:00"]
NUMBERS = [
    str(10**30),
    str(-(10**30)),
    str(2**63),
    str(2**63 - 1),
    str(-(2**63)),
    str(2**31),
    "0",
    "-0",
    "-1",
    "1e309",
    "-1e309",
    "1e-400",
    "1e300",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "Infinity",
    "1_000",
    "0x1F",
    "1,5",
    " 7 ",
    "+3",
    "0" * 40 + "1",
]
DIGIT_NAMES = ("ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE")


def in_digits(text: str, script: str) -> str:
    """The text with its ASCII digits written in another script's ("ARABIC-INDIC", "FULLWIDTH", ...)."""
    return text.translate(
        {
            ord(str(digit)): unicodedata.lookup(f"{script} DIGIT {name}")
            for digit, name in enumerate(DIGIT_NAMES)
        }
    )


UNICODE_DIGITS = [
    "\N{SUPERSCRIPT TWO}",
    "\N{ARABIC-INDIC DIGIT THREE}",
    "\N{NKO DIGIT ZERO}",
    "\N{FULLWIDTH DIGIT ONE}",
    "\N{TAMIL DIGIT FIVE}",
    "\N{ROMAN NUMERAL TWELVE}",
    "\N{VULGAR FRACTION ONE HALF}",
    "\N{MATHEMATICAL DOUBLE-STRUCK DIGIT ONE}",
    in_digits("12", "FULLWIDTH"),
    in_digits(str(10**30), "ARABIC-INDIC"),
    in_digits("2026-01-05", "ARABIC-INDIC"),
    in_digits("2026-01-05", "FULLWIDTH"),
    in_digits("2026-01-05", "DEVANAGARI"),
    in_digits("2026-01-05T00:00:00Z", "NKO"),
    in_digits("0001-01-01", "FULLWIDTH"),
    in_digits("9999-12-31T23:59:59-23:59", "ARABIC-INDIC"),
]
LONG_STRINGS = ["9" * 10_000, "a" * 10_000, "2026-01-05" + "x" * 9_990, "é" * 10_000, "-" * 10_000]
CONTROL_STRINGS = [
    "",
    " ",
    "\x00",
    "2026-01-05\x00",
    "\x00" * 3,
    "\x1b[31m",
    "\r\n",
    "\t",
    "\x7f",
    "\u202e",
    "\ufeff2026-01-05",
    "\u200b",
    "\x0c",
]
# Text that means something to SQL LIKE, regular expressions, HTML or templates.
SPECIAL_TEXT = ["%", "_", "\\", "'", '"', "<script>", "{{ 7|add:7 }}", "(", "[", "*", "(?P<"]
SPECIAL_TEXT += ["a{99999999999}"]  # a repetition too large for Python's re

calendar_ends = st.sampled_from(CALENDAR_ENDS)
any_day = st.dates().map(date.isoformat)  # 0001-01-01 to 9999-12-31, its ends favoured
any_offset = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(
    lambda minutes: f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02}:{abs(minutes) % 60:02}"
)
instants_at_the_ends = st.builds(
    "{}{}{}{}".format,
    calendar_ends | any_day,
    st.sampled_from(["T", " "]),
    st.sampled_from(EXTREME_TIMES) | st.times().map(str),
    st.sampled_from(EXTREME_OFFSETS) | any_offset,
)
hostile_values = st.one_of(
    calendar_ends,
    any_day,
    instants_at_the_ends,
    st.sampled_from(NUMBERS),
    st.integers().map(str),
    st.floats().map(repr),
    st.sampled_from(UNICODE_DIGITS),
    st.text(st.characters(categories=("Nd", "No", "Nl")), min_size=1, max_size=12),
    st.sampled_from(LONG_STRINGS),
    st.sampled_from(CONTROL_STRINGS),
    st.text(st.characters(categories=("Cc", "Cf", "Zs")), max_size=5),
    st.sampled_from(SPECIAL_TEXT),
    st.text(max_size=20),
)

# Plausible values by what a field means where its class does not say it.
plausible_days = st.dates(date(2025, 1, 1), date(2027, 12, 31)).map(date.isoformat)
plausible_instants = st.datetimes(datetime(2025, 1, 1), datetime(2027, 12, 31), timezones=st.just(UTC)).map(
    datetime.isoformat
)
PLAUSIBLE_BY_NAME = {
    "type": st.sampled_from(["feature", "defect", "risk", "debt", "deployment", "no-such-type"]),
    "product": st.sampled_from(["granted", "other", "no-such-product"]),
    "done_after": plausible_instants,
    "done_before": plausible_instants,
    "q": st.sampled_from(["A-OWN", "title", "DONE", "deploy", "B-OWN", "zz"]),
    "account": st.sampled_from([SECRET_ACCOUNT, "Globex", "nobody"]),
    "production": st.sampled_from(["production", "prod|live", "^prod", "staging", "(", "[a-"]),
    "page": st.integers(1, 3).map(str),
}


def plausible_values(name: str, field: forms.Field | None) -> st.SearchStrategy[str]:
    """Values the parameter accepts (or nearly), from its name, else from its form field's class."""
    if name in PLAUSIBLE_BY_NAME:
        return PLAUSIBLE_BY_NAME[name]
    if isinstance(field, forms.DateField):
        return plausible_days
    if isinstance(field, forms.ChoiceField):
        return st.sampled_from([str(value) for value, _label in field.choices])
    if isinstance(field, forms.IntegerField):
        low = field.min_value if field.min_value is not None else -10
        high = field.max_value if field.max_value is not None else 10_000
        return st.integers(low - 1, high + 1).map(str)
    if isinstance(field, forms.FloatField):
        return st.floats(0, 10**8, allow_nan=False).map(str)
    return st.text(max_size=20)


def parameter_values(name: str, field: forms.Field | None) -> st.SearchStrategy:
    one = plausible_values(name, field) | hostile_values
    return one | st.lists(one, min_size=2, max_size=3)  # a repeated parameter: ?a=1&a=2


def queries(page: Page) -> st.SearchStrategy[dict]:
    """A query of some of the page's parameters: all plausible (the valid paths), or any values."""
    fields = page.form.base_fields if page.form else {}

    def of(values) -> st.SearchStrategy[dict]:
        return st.fixed_dictionaries(
            {}, optional={name: values(name, fields.get(name)) for name in page.parameters}
        )

    return of(plausible_values) | of(parameter_values)


# --- the world -----------------------------------------------------------------------------------------


def _supporting(world, model, key, at, connection, **kwargs):
    return ArtifactFactory(
        product=world.product,
        artifact_model=artifact_model(model),
        flow_item_type=None,
        connection=connection,
        key=key,
        title=f"{key} title",
        created_at=at,
        **kwargs,
    )


def build_fuzz_world():
    """build_scope_world, plus done items of every type (some in partner A's scope), commits, builds and
    production deployments (one failed, an incident after it) in "granted"; rollups rebuilt."""
    w = build_scope_world()
    for index, flow_type in enumerate(["feature", "defect", "risk", "debt"] * 3):
        start = BASE_TIME + timedelta(days=25 * index)
        flow_item(
            w.product,
            (start, FlowState.ACTIVE),
            (start + timedelta(days=2), FlowState.WAITING),
            (start + timedelta(days=4 + index), FlowState.DONE),
            flow_type=flow_type,
            connection=w.partner_conn if index % 3 == 0 else w.internal_conn,
            key=f"DONE-{index}",
        )
    for week in range(4):
        monday = BASE_TIME + timedelta(days=7 * week)
        failed = week == 2
        commit = _supporting(w, "commit", f"CMT-{week}", monday, w.partner_conn)
        build = _supporting(w, "build", f"BLD-{week}", monday + timedelta(hours=2), w.internal_conn)
        deployment = _supporting(
            w,
            "deployment",
            f"DEP-{week}",
            monday + timedelta(hours=5),
            w.partner_conn if week % 2 else w.internal_conn,
            fields={"environment": "production", "result": "FAILURE" if failed else "SUCCESS"},
            flow_state=FlowState.CANCELED if failed else FlowState.DONE,
            done_at=None if failed else monday + timedelta(hours=6),
        )
        ArtifactLinkFactory(source=commit, target=build, kind=LinkKind.BUILT_IN)
        ArtifactLinkFactory(source=build, target=deployment, kind=LinkKind.DEPLOYED_IN)
        if failed:
            incident = _supporting(
                w,
                "incident",
                f"INC-{week}",
                monday + timedelta(days=1),
                w.internal_conn,
                flow_state=FlowState.DONE,
                done_at=monday + timedelta(days=1, hours=3),
            )
            ArtifactLinkFactory(source=incident, target=deployment, kind=LinkKind.RELATES_TO)
    for product in (w.product, w.other_product):
        product_rollups_rebuild(product)
    return w


@pytest.fixture
def clients():
    """Logged-in clients of a staff user and of partner A's user, over build_fuzz_world."""
    world = build_fuzz_world()
    return {"staff": portal_client_for(world.staff), "partner": portal_client_for(world.partner_user)}


# --- the fuzz ------------------------------------------------------------------------------------------

ALERT = re.compile(r'<p class="message error" role="alert">(.*?)</p>', re.DOTALL)


def form_error_messages(form: forms.Form) -> list[str]:
    return [message for messages in form.errors.values() for message in messages]


def assert_answered(response, page: Page) -> None:
    """A page whose refused values are said in alerts, a CSV, or a 4xx that says something."""
    assert response.status_code < 500, f"server error {response.status_code}"
    if response.status_code >= 400:
        assert response.content, f"an empty {response.status_code}"
        return
    assert response.status_code == 200, f"unexpected {response.status_code}"
    if response["Content-Type"].startswith("text/csv"):
        return
    refusals = list(response.context.get("errors") or [])
    if "form" in response.context and page.form is not None:
        form = response.context["form"]
        assert type(form) is page.form, f"the page builds a {type(form).__name__}, not {page.form.__name__}"
        refusals += form_error_messages(form)
    alerts = "\n".join(ALERT.findall(response.content.decode()))
    for message in refusals:
        assert escape(message) in alerts, f"the refusal {message!r} is not shown on the page"


@pytest.mark.parametrize("portal_page", PAGES, ids=lambda page: page.url_name)
@settings(
    max_examples=EXAMPLES_PER_PAGE,
    derandomize=True,
    database=None,
    deadline=None,
    # `clients` (and its world) is built once per page, not per example: the examples only read it.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_no_query_string_breaks_a_portal_page_and_every_refusal_is_shown(portal_page, clients, data):
    page = portal_page  # not `page`, which pytest-playwright's fixture of that name would parametrize
    url = data.draw(st.sampled_from(page.urls()), label="url")
    query = data.draw(queries(page), label="query")
    for role, client in clients.items():
        note(f"as {role}")
        # A savepoint: on PostgreSQL, a failed query must not abort the transaction of later examples.
        with transaction.atomic():
            response = client.get(url, query)
        assert_answered(response, page)


# --- the edges, one parameter at a time ----------------------------------------------------------------

# A random search hits a given value in a given parameter only by luck; these, the likeliest to break a
# page, are each tried alone in every parameter of every page (alone: another parameter could hide it,
# as a window_start hides the default computed from a window_end).
EDGE_VALUES = [
    "0001-01-01",
    "9999-12-31",
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00+23:59",
    "9999-12-31T23:59:59-23:59",
    "9999-12-31T23:59:59-14:00",
    "\N{SUPERSCRIPT TWO}",
    "\N{ARABIC-INDIC DIGIT THREE}",
    in_digits("0001-01-01", "FULLWIDTH"),
    in_digits("9999-12-31T23:59:59-23:59", "ARABIC-INDIC"),
    str(10**30),
    str(-(10**30)),
    str(2**63),
    "nan",
    "1e309",
    "",
    "9" * 10_000,
    "\x00",
    "a{99999999999}",
]


def _shown(value: str) -> str:
    return repr(value) if len(value) <= 40 else f"{value[:20]!r}... ({len(value)} characters)"


@pytest.mark.parametrize("portal_page", PAGES, ids=lambda page: page.url_name)
def test_every_edge_value_alone_in_every_parameter_is_answered(portal_page, clients):
    page = portal_page
    urls, failures = page.urls(), []
    for index, (name, value) in enumerate(itertools.product(page.parameters, EDGE_VALUES)):
        url = urls[index % len(urls)]  # the CSV exports' tables in turn
        for role, client in clients.items():
            try:
                with transaction.atomic():
                    response = client.get(url, {name: value})
                assert_answered(response, page)
            except Exception as error:  # every failure of the page is listed, not only the first
                failures.append(f"as {role}: {url} {name}={_shown(value)}: {type(error).__name__}: {error}")
    assert not failures, "\n".join(failures)


# --- the guards: nothing read from the URL escapes the fuzz -------------------------------------------

# The portal's pages that read no query parameter (checked below), so have nothing to fuzz.
READ_NO_PARAMETER = {"landing", "artifact", "trace", "landscape"}
GET_READ = re.compile(r"request\.GET\b(?P<rest>.{0,40})")
GET_PARAMETER = re.compile(r'^\.get\("(?P<name>\w+)"')
FORM_FROM_GET = re.compile(r"(?P<form>\w+)\(request\.GET(?!\.)")


def portal_sources() -> dict[str, str]:
    """The source of every module of vsm.portal, by name."""
    names = (f"{portal.__name__}.{module.name}" for module in pkgutil.iter_modules(portal.__path__))
    return {name: inspect.getsource(importlib.import_module(name)) for name in names}


def test_every_portal_page_is_fuzzed_or_reads_no_parameter():
    patterns = {pattern.name: pattern.callback for pattern in portal_urls.urlpatterns}
    assert set(patterns) == {page.url_name for page in PAGES} | READ_NO_PARAMETER
    for name in READ_NO_PARAMETER:
        assert "request.GET" not in inspect.getsource(patterns[name]), f"{name} reads request.GET"


def test_every_parameter_a_portal_view_reads_is_fuzzed():
    fuzzed_reads = {name for page in PAGES for name in page.reads}
    fuzzed_forms = {page.form.__name__ for page in PAGES if page.form}
    unknown = []
    for module, source in portal_sources().items():
        forms_from_get = {match["form"] for match in FORM_FROM_GET.finditer(source)}
        unknown += [f"{module}: form {name}" for name in forms_from_get - fuzzed_forms]
        for match in GET_READ.finditer(source):
            rest = match["rest"]
            parameter = GET_PARAMETER.match(rest)
            if parameter:
                if parameter["name"] not in fuzzed_reads:
                    unknown.append(f"{module}: parameter {parameter['name']!r}")
            elif not rest.startswith((",", ")", " or None)", ".copy()")):
                # Passed to a form (checked above) or copied for the pager links; anything else is new.
                unknown.append(f"{module}: request.GET{rest}")
    assert not unknown, f"read from the URL but not fuzzed here: {unknown}"
