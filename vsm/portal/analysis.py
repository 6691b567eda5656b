"""Portal pages that analyse a product's flow: the bottleneck finder, the item flow analyzer, DORA and the
forecast. Thin like vsm.portal.views: the numbers come from metrics.selectors, always through
`visible_to`; these views choose the filters, shape rows for the tables (the same rows feed the chart
data islands and the CSV downloads) and format units.
"""

from datetime import UTC
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import F, Q
from django.http import Http404
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from metrics import selectors as metrics_selectors
from metrics.selectors import OPEN_STATES, NoHistoryError
from vsm.choices import FlowState
from vsm.portal.forms import DoraForm, ForecastForm, ItemAnalyzerForm, WindowForm
from vsm.portal.views import Link, _days, _percent, csv_response, trace_urls
from vsm.scoping import reach_of

HOUR = 3600.0
BOTTLENECK_ITEMS = 5  # the items that spent the most time in a state or status, listed per row
BOTTLENECK_CHART_STATUSES = 15
ANALYZER_PAGE_SIZE = 50
ITEM_STATES = {"open": OPEN_STATES, "done": (FlowState.DONE,), "canceled": (FlowState.CANCELED,)}


def _hours(seconds):
    return None if seconds is None else round(seconds / HOUR, 1)


def _window_query(window) -> dict:
    return {"window_start": window.first_day.isoformat(), "window_end": window.last_day.isoformat()}


def _table_csv(context: dict, name: str, page: str):
    """One of a page's tables as CSV; 404 for a table the page does not have."""
    table = context["tables"].get(name)
    if table is None:
        raise Http404(f"no table {name!r}")
    columns, rows = table["columns"], (row["cells"] for row in table["rows"])
    if "items_column" in table:
        columns = [*columns, table["items_column"]]
        rows = ([*row["cells"], "; ".join(map(str, row["items"]["links"]))] for row in table["rows"])
    return csv_response(f"{context['product'].slug}-{page}-{name}.csv", columns, rows)


def _chart(labels, datasets: dict, **options) -> dict:
    """What static/vsm/charts.js draws: labels, {series label: values} and display options."""
    return {
        "labels": labels,
        "datasets": [{"label": label, "data": data} for label, data in datasets.items()],
        **options,
    }


def _item_links(items: list[dict], total: int, trace_url) -> dict:
    return {
        "links": [
            Link(f"{item['key']} ({_days(item['seconds'])} d)", trace_url(item["artifact"])) for item in items
        ],
        "more": total - len(items),
    }


# --- bottleneck finder ---------------------------------------------------------------------------------


def _bottleneck_rows(places: list[dict]) -> list[dict]:
    trace_url = trace_urls()
    grand_total = sum(place["total"] for place in places) or None
    rows = []
    for place in places:
        name = (
            FlowState(place["state"]).label
            if "state" in place
            else f"{place['status'] or '(no status)'} ({place['tool']})"
        )
        rows.append(
            {
                "cells": [
                    name,
                    _days(place["total"]),
                    _percent(place["total"] / grand_total) if grand_total else None,
                    place["visits"],
                    _days(place["mean"]),
                    _days(place["p85"]),
                    place["current"],
                    place["peak"],
                    place["peak_day"].isoformat() if place["peak_day"] else None,
                ],
                "items": _item_links(place["items"], place["item_count"], trace_url),
            }
        )
    return rows


BOTTLENECK_COLUMNS = [
    "Time in the window (days)",
    "Share %",
    "Visits",
    "Mean per visit (days)",
    "p85 per visit (days)",
    "Now",
    "Peak",
    "Peak day",
]


def _bottleneck_context(request, slug: str) -> dict:
    product = metrics_selectors.product_get_visible(request.user, slug)
    form = WindowForm(request.GET, user=request.user, product=product)
    window = form.window()
    # Replaying every ledger of the window takes seconds on a large product: cached like the dashboard.
    result = metrics_selectors.cached_per_reach(
        request.user,
        product,
        "bottlenecks",
        {**_window_query(window), "max_items": BOTTLENECK_ITEMS},
        lambda: metrics_selectors.bottlenecks(request.user, product, window, max_items=BOTTLENECK_ITEMS),
    )
    tables = {
        "states": {
            "caption": "Flow states, ranked by the time items spent there in the window",
            "columns": ["Flow state", *BOTTLENECK_COLUMNS],
            "items_column": "Items with the most time there",
            "rows": _bottleneck_rows(result["states"]),
        },
        "statuses": {
            "caption": "Tool statuses, ranked by the time items spent there in the window",
            "columns": ["Tool status", *BOTTLENECK_COLUMNS],
            "items_column": "Items with the most time there",
            "rows": _bottleneck_rows(result["statuses"]),
        },
    }
    charts = {
        name: _chart(
            [row["cells"][0] for row in rows],
            {"Days in the window": [row["cells"][1] for row in rows]},
            horizontal=True,
            title="Days",
        )
        for name, rows in (
            ("states", tables["states"]["rows"]),
            ("statuses", tables["statuses"]["rows"][:BOTTLENECK_CHART_STATUSES]),
        )
    }
    return {
        "product": product,
        "form": form,
        "errors": form.messages(),
        "window": window,
        "result": result,
        "query": urlencode(_window_query(window)),
        "tables": tables,
        "charts": charts,
        "partner_view": reach_of(request.user).is_partner,
    }


@login_required
def product_bottlenecks(request, slug: str):
    return render(request, "portal/bottlenecks.html", _bottleneck_context(request, slug))


@login_required
def product_bottlenecks_csv(request, slug: str, table: str):
    return _table_csv(_bottleneck_context(request, slug), table, "bottlenecks")


# --- item flow analyzer --------------------------------------------------------------------------------


def _ordered(rollups, sort: str):
    """Empty values last either way, ties by artifact id; age orders by when it started (older: greater)."""
    descending, name = sort.startswith("-"), sort.lstrip("-")
    if name == "age":
        name, descending = "age_since", not descending
    expression = F(name).desc(nulls_last=True) if descending else F(name).asc(nulls_last=True)
    return rollups.order_by(expression, "artifact_id")


@login_required
def product_item_analyzer(request, slug: str):
    """Every flow item of the product the user may see, filtered and sorted, with age, flow time and
    efficiency (open items' figures taken now), each linking to its trace."""
    product = metrics_selectors.product_get_visible(request.user, slug)
    form = ItemAnalyzerForm(request.GET, user=request.user)
    state, search, sort = form.chosen("state"), form.chosen("q"), form.chosen("sort")
    flow_type = form.flow_type()
    rollups = metrics_selectors.item_rollup_list(request.user).filter(product=product)
    if state:
        rollups = rollups.filter(current_state__in=ITEM_STATES[state])
    if flow_type is not None:
        rollups = rollups.filter(flow_item_type=flow_type)
    if search:
        rollups = rollups.filter(Q(artifact__key__icontains=search) | Q(artifact__title__icontains=search))
    page = Paginator(_ordered(rollups, sort), ANALYZER_PAGE_SIZE).get_page(request.GET.get("page"))
    now, trace_url = timezone.now(), trace_urls()
    rows = []
    for rollup in page:
        active, waiting, efficiency = metrics_selectors.item_times_at(rollup, now)
        rows.append(
            {
                "rollup": rollup,
                "url": trace_url(rollup.artifact_id),
                "state": FlowState(rollup.current_state).label,
                "age": _days((now - rollup.age_since).total_seconds()) if rollup.age_since else None,
                "flow_time": _days(rollup.flow_time),
                "active": _days(active),
                "waiting": _days(waiting),
                "efficiency": _percent(efficiency),
            }
        )
    filters = {
        name: value
        for name, value in (
            ("state", state),
            ("type", flow_type.slug if flow_type else ""),
            ("q", search),
        )
        if value
    }
    api_query = {"product": product.pk, "format": "csv", "ordering": sort}
    if state:
        api_query["state"] = list(ITEM_STATES[state])
    if flow_type is not None:
        api_query["type"] = flow_type.slug
    context = {
        "product": product,
        "form": form,
        "errors": form.messages(),
        "page": page,
        "rows": rows,
        "sort": sort,
        "sort_links": _sort_links(filters, sort),
        "paging": urlencode({**filters, "sort": sort}),
        # The API's CSV has no text search: without one, the same rows; with one, no download.
        "csv_url": None if search else f"{reverse('metrics-item-list')}?{urlencode(api_query, doseq=True)}",
    }
    return render(request, "portal/analyzer.html", context)


def _sort_links(filters: dict, sort: str) -> dict:
    """Per sortable column: the query that sorts by it (the other direction when it is the current sort)
    and aria-sort's value."""
    links = {}
    for name, first in (("age", "-"), ("flow_time", "-"), ("efficiency", ""), ("done_at", "-")):
        current, descending = sort.lstrip("-") == name, sort.startswith("-")
        # A click on the current column turns it round; on another, its most useful direction first.
        next_sort = (name if descending else f"-{name}") if current else f"{first}{name}"
        links[name] = {
            "query": urlencode({**filters, "sort": next_sort}),
            "aria": ("descending" if descending else "ascending") if current else None,
        }
    return links


# --- DORA ----------------------------------------------------------------------------------------------

DORA_FIGURES = {
    "deployment_frequency": "Deployment frequency",
    "lead_time_for_changes": "Lead time for changes",
    "change_failure_rate": "Change failure rate",
    "failed_deployment_recovery_time": "Failed deployment recovery time",
}
DORA_CONVENTION_WORDS = {
    "commit": "per commit",
    "pull_request": "per pull request, from its first commit",
    "attempts": "over every finished deployment attempt",
    "successful": "over successful deployments",
}


def _dora_levels(metrics: dict) -> dict:
    """Per figure: its level (as the API gives it), a label, and the value tested in the page's units."""
    rules = metrics["rules"]
    conventions = {
        "deployment_frequency": "deployment days",
        "lead_time_for_changes": DORA_CONVENTION_WORDS[rules["lead_time"]],
        "change_failure_rate": DORA_CONVENTION_WORDS[rules["failure_rate"]],
        "failed_deployment_recovery_time": None,
    }
    levels = {}
    for name, title in DORA_FIGURES.items():
        level = metrics[name]["level"]
        value, measure = level["value"], level["measure"]
        if name in ("lead_time_for_changes", "failed_deployment_recovery_time"):
            value, measure = _hours(value), "p50 (hours)"
        elif name == "change_failure_rate":
            value, measure = _percent(value), "rate %"
        levels[name] = {
            **level,
            "label": level["level"].capitalize() if level["level"] else "No level",
            "title": title,
            "convention": conventions[name],
            "shown_measure": measure,
            "shown_value": value,
        }
    return levels


def _dora_context(request, slug: str) -> dict:
    product = metrics_selectors.product_get_visible(request.user, slug)
    form = DoraForm(request.GET, user=request.user, product=product)
    window, bucket, rules = form.window(), form.chosen_bucket(), form.rules()
    metrics = metrics_selectors.dora_metrics(request.user, product, window, bucket, **rules)
    frequency = metrics["deployment_frequency"]
    lead_time = metrics["lead_time_for_changes"]
    failure_rate = metrics["change_failure_rate"]
    recovery = metrics["failed_deployment_recovery_time"]
    per_pull_request = rules["lead_time_convention"] == "pull_request"
    successful_only = rules["failure_rate_convention"] == "successful"
    levels = _dora_levels(metrics)
    trace_url = trace_urls()
    deployments_by_bucket: dict = {}
    for deployment in frequency["deployments"]:
        deployments_by_bucket.setdefault(deployment["bucket"], []).append(
            Link(deployment["key"], trace_url(deployment["artifact"]))
        )

    def day(start):
        return start.date().isoformat()

    tables = {
        "levels": {
            "caption": f"DORA performance levels: {metrics['rules']['levels']}",
            "columns": ["Metric", "Convention", "Level", "Band", "Measure", "Value", "Why no level"],
            "rows": [
                {
                    "cells": [
                        level["title"],
                        level["convention"],
                        level["level"],
                        level["band"],
                        level["shown_measure"],
                        level["shown_value"],
                        level["reason"],
                    ]
                }
                for level in levels.values()
            ],
        },
        "frequency": {
            "caption": "Deployment frequency: successful production deployments per bucket",
            "columns": ["Bucket start", "Deployments"],
            "items_column": "Which",
            "rows": [
                {
                    "cells": [day(row["start"]), row["count"]],
                    "items": {"links": deployments_by_bucket.get(row["start"], []), "more": 0},
                }
                for row in frequency["buckets"]
            ],
        },
        "lead_time": {
            "caption": (
                "Lead time for changes per pull request: its first commit to the production deployment "
                "that shipped the last of its commits, in hours"
                if per_pull_request
                else "Lead time for changes: commit to its first production deployment, in hours"
            ),
            "columns": [
                "Bucket start",
                "Pull requests" if per_pull_request else "Changes",
                "p50 (hours)",
                "p85 (hours)",
                "Mean (hours)",
            ],
            "rows": [
                {
                    "cells": [
                        day(row["start"]),
                        row["count"],
                        _hours(row["p50"]),
                        _hours(row["p85"]),
                        _hours(row["mean"]),
                    ]
                }
                for row in lead_time["buckets"]
            ],
        },
        "failure_rate": {
            "caption": (
                "Change failure rate over successful production deployments: those an incident or defect "
                "followed (failed deployments are not counted)"
                if successful_only
                else "Change failure rate: production deployments that failed or that an incident or "
                "defect followed"
            ),
            "columns": (
                ["Bucket start", "Successful deployments", "Followed by an incident or defect", "Rate %"]
                if successful_only
                else ["Bucket start", "Deployments", "Failed", "Rate %"]
            ),
            "rows": [
                {"cells": [day(row["start"]), row["deployments"], row["failed"], _percent(row["rate"])]}
                for row in failure_rate["buckets"]
            ],
        },
        "recovery": {
            "caption": "Failed deployment recovery time, in hours",
            "columns": ["Bucket start", "Failures recovered", "p50 (hours)", "Mean (hours)"],
            "rows": [
                {"cells": [day(row["start"]), row["count"], _hours(row["p50"]), _hours(row["mean"])]}
                for row in recovery["buckets"]
            ],
        },
        "deployments": {
            "caption": (
                "Successful production deployments in the window (failed ones are not counted)"
                if successful_only
                else "Production deployments in the window"
            ),
            "columns": [
                "Deployment",
                "At (UTC)",
                "Followed by an incident or defect" if successful_only else "Failed",
            ],
            "items_column": "Incidents and defects that followed",
            "rows": [
                {
                    "cells": [
                        Link(row["key"], trace_url(row["artifact"])),
                        row["at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
                        "yes" if row["failed"] else "",
                    ],
                    "items": {
                        "links": [Link(ref["key"], trace_url(ref["artifact"])) for ref in row["incidents"]],
                        "more": 0,
                    },
                }
                for row in failure_rate["results"]
            ],
        },
    }

    def column(name, index):
        return [row["cells"][index] for row in tables[name]["rows"]]

    charts = {
        "frequency": _chart(
            column("frequency", 0), {"Deployments": column("frequency", 1)}, title="Deployments", integer=True
        ),
        "lead_time": _chart(
            column("lead_time", 0),
            {"p50 (hours)": column("lead_time", 2), "p85 (hours)": column("lead_time", 3)},
            type="line",
            title="Hours",
        ),
        "failure_rate": _chart(
            column("failure_rate", 0), {"Rate %": column("failure_rate", 3)}, title="%", max=100
        ),
        "recovery": _chart(
            column("recovery", 0), {"p50 (hours)": column("recovery", 2)}, type="line", title="Hours"
        ),
    }
    return {
        "product": product,
        "form": form,
        "errors": form.messages(),
        "window": window,
        "bucket": bucket,
        "metrics": metrics,
        "summary": {
            "per_week": None if frequency["per_week"] is None else round(frequency["per_week"], 2),
            "lead_time_p50": _hours(lead_time["p50"]),
            "failure_rate": _percent(failure_rate["rate"]),
            "recovery_p50": _hours(recovery["p50"]),
        },
        "levels": levels,
        "conventions": {
            "lead_time": DORA_CONVENTION_WORDS[rules["lead_time_convention"]],
            "failure_rate": DORA_CONVENTION_WORDS[rules["failure_rate_convention"]],
        },
        "query": urlencode({**_window_query(window), "bucket": bucket, **_dora_rules_query(rules)}),
        "tables": tables,
        "charts": charts,
    }


def _dora_rules_query(rules: dict) -> dict:
    query = {
        "failure_window_days": rules["failure_window_days"],
        "lead_time": rules["lead_time_convention"],
        "failure_rate": rules["failure_rate_convention"],
    }
    if rules["production_pattern"]:
        query["production"] = rules["production_pattern"]
    return query


@login_required
def product_dora(request, slug: str):
    return render(request, "portal/dora.html", _dora_context(request, slug))


@login_required
def product_dora_csv(request, slug: str, table: str):
    return _table_csv(_dora_context(request, slug), table, "dora")


# --- forecast ------------------------------------------------------------------------------------------


def _forecast_context(request, slug: str) -> dict:
    product = metrics_selectors.product_get_visible(request.user, slug)
    form = ForecastForm(request.GET, user=request.user, product=product)
    query, flow_type = form.query(), form.flow_type()
    errors = form.messages()
    history = query["history"]
    try:
        forecast = metrics_selectors.flow_forecast(
            request.user,
            product,
            history,
            items=query["items"],
            until=query["until"],
            start_day=form.start,
            flow_type=flow_type,
        )
    except (NoHistoryError, ValueError) as error:
        forecast = None
        errors.append(str(error))
    rollups = metrics_selectors.item_rollups_scoped(request.user, product, flow_type=flow_type)
    throughput = metrics_selectors.daily_done_counts(rollups, history, ZoneInfo(product.time_zone))
    days = [day.isoformat() for day in history.days()]
    answer_column = "Done by (day)" if query["items"] else "Items done"
    tables = {
        "forecast": {
            "caption": (
                f"When {query['items']} items will be done, from {form.start}"
                if query["items"]
                else f"How many items will be done from {form.start} to {query['until']}"
            ),
            "columns": ["Confidence %", answer_column],
            "rows": [
                {"cells": [row["confidence"], row["date"].isoformat() if "date" in row else row["items"]]}
                for row in (forecast["forecast"] if forecast else [])
            ],
        },
        "history": {
            "caption": f"Items done per day of the history, {history.first_day} to {history.last_day}",
            "columns": ["Day", "Items done"],
            "rows": [{"cells": [day, count]} for day, count in zip(days, throughput, strict=True)],
        },
    }
    charts = {"history": _chart(days, {"Items done": throughput}, title="Items", integer=True)}
    query_string = {
        "question": "when" if query["items"] else "how_many",
        "history_start": history.first_day.isoformat(),
        "history_end": history.last_day.isoformat(),
        **({"items": query["items"]} if query["items"] else {"until": query["until"].isoformat()}),
        **({"type": flow_type.slug} if flow_type else {}),
    }
    return {
        "product": product,
        "form": form,
        "errors": errors,
        "forecast": forecast,
        "question": query,
        "history": history,
        "flow_type": flow_type,
        "query": urlencode(query_string),
        "tables": tables,
        "charts": charts,
    }


@login_required
def product_forecast(request, slug: str):
    return render(request, "portal/forecast.html", _forecast_context(request, slug))


@login_required
def product_forecast_csv(request, slug: str, table: str):
    return _table_csv(_forecast_context(request, slug), table, "forecast")
