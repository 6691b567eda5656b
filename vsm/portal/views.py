"""Portal pages: thin views over the selectors of vsm and metrics, always through `visible_to`.

The numbers come from metrics.selectors; the views only choose the window, shape rows for the tables
(the same rows feed the HTML tables, the chart data islands and the CSV downloads) and format units.
"""

import csv
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from metrics import selectors as metrics_selectors
from vsm import selectors
from vsm.models import Product
from vsm.portal.forms import DoneItemsForm, FlowFilterForm, WindowForm, previous_window
from vsm.scoping import reach_of

DAY = 86400.0
OVERVIEW_BUCKET = "quarter"  # the overview reads only the window's totals: the fewest buckets
ITEMS_PAGE_SIZE = 100
SCATTER_MAX_POINTS = 500  # the latest done items drawn (and tabled); the CSV has them all
TRACE_URL_SENTINEL = 2**62
CHARTS = ("velocity", "distribution", "flow_time", "scatter", "load", "efficiency")


def _days(seconds):
    return None if seconds is None else round(seconds / DAY, 1)


def _percent(share):
    return None if share is None else round(share * 100, 1)


@dataclass(frozen=True, slots=True)
class Link:
    """A table cell that links somewhere; CSV cells get its text."""

    text: object
    url: str

    def __str__(self) -> str:
        return str(self.text)


def trace_urls() -> Callable[[int], str]:
    """The trace page's URL of an artifact id, from one reverse() for a page's many rows."""
    template = reverse("portal:trace", args=[TRACE_URL_SENTINEL]).replace(str(TRACE_URL_SENTINEL), "{}")
    return template.format


def csv_response(filename: str, columns: list[str], rows: Iterable[Iterable]) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response, lineterminator="\r\n")
    writer.writerow(columns)
    for cells in rows:
        writer.writerow(_csv_cell(cell) for cell in cells)
    return response


def _trend(current, previous):
    """Difference to the previous window, for display: None when either is missing."""
    if current is None or previous is None:
        return None
    return round(current - previous, 1)


# --- landing and products overview ---------------------------------------------------------------------


@login_required
def landing(request):
    """Where a login lands: a partner user granted a single product goes straight to its flow dashboard;
    everyone else (and a partner granted several) to the products overview."""
    if reach_of(request.user).is_partner:
        slugs = list(Product.objects.visible_to(request.user).values_list("slug", flat=True)[:2])
        if len(slugs) == 1:
            return redirect("portal:flow", slugs[0])
    return redirect("portal:home")


def _summary(metrics: dict) -> dict:
    return {
        "velocity": metrics["velocity"]["total"],
        "flow_time_p50": _days(metrics["flow_time"]["p50"]),
        "efficiency": _percent(metrics["efficiency"]["overall"]),
        "load": None if metrics["load"]["average"] is None else round(metrics["load"]["average"], 1),
        "distribution": {
            slug: _percent(share) for slug, share in metrics["distribution"]["done"]["shares"].items()
        },
    }


@login_required
def home(request):
    """Every visible product, one row each; the rows' metrics load from product_summary.

    metrics has no multi-product selector yet, and two flow_metrics calls cost about 13 queries, so a
    page computing every row would grow by 13 queries per product. The page lists the products (a
    fixed number of queries) and a static script fills each row from its own request.
    """
    form = WindowForm(request.GET, user=request.user, today=timezone.localdate())
    window = form.window()
    query = urlencode(
        {"window_start": window.first_day.isoformat(), "window_end": window.last_day.isoformat()}
    )
    products = list(selectors.product_list_for(request.user))
    context = {
        "form": form,
        "errors": form.messages(),
        "window": window,
        "previous": previous_window(window),
        "query": query,
        "products": products,
    }
    return render(request, "portal/home.html", context)


@login_required
def product_summary(request, slug: str):
    """One product's row of the overview: its five flow metrics in the window and the trend against the
    previous window of the same length."""
    product = metrics_selectors.product_get_visible(request.user, slug)
    form = WindowForm(request.GET, user=request.user, today=timezone.localdate())
    window = form.window()
    current = _summary(metrics_selectors.flow_metrics(request.user, product, window, OVERVIEW_BUCKET))
    before = previous_window(window)
    previous = _summary(metrics_selectors.flow_metrics(request.user, product, before, OVERVIEW_BUCKET))
    trends = {
        name: _trend(current[name], previous[name])
        for name in ("velocity", "flow_time_p50", "efficiency", "load")
    }
    row = {"product": product, "current": current, "previous": previous, "trend": trends}
    return render(
        request,
        "portal/_overview_row.html",
        {"row": row, "dashboard": _flow_url(product, window), "errors": form.messages()},
    )


def _flow_url(product, window, **params) -> str:
    query = {
        "window_start": window.first_day.isoformat(),
        "window_end": window.last_day.isoformat(),
        **params,
    }
    return f"{reverse('portal:flow', args=[product.slug])}?{urlencode(query)}"


# --- product flow dashboard ----------------------------------------------------------------------------


def _flow_context(request, slug: str, scatter_limit: int | None, *, cached: bool = False) -> dict:
    """The product (404 when out of reach), the filters with their messages, and the figures (metrics,
    tables, charts; `cached`: from metrics_selectors.cached_per_reach, with the charts' HTML); the
    scatter shows the latest `scatter_limit` done items (None: all of them)."""
    product = metrics_selectors.product_get_visible(request.user, slug)
    form = FlowFilterForm(request.GET, user=request.user, product=product)
    window, bucket, flow_type = form.window(), form.chosen_bucket(), form.flow_type()
    query = {"window_start": window.first_day.isoformat(), "window_end": window.last_day.isoformat()}
    query["bucket"] = bucket
    if flow_type is not None:
        query["type"] = flow_type.slug

    def compute() -> dict:
        return _flow_figures(request.user, product, window, bucket, flow_type, scatter_limit)

    def compute_with_html() -> dict:
        # Rendering the tables behind the charts takes longer than reading the figures: cached with them.
        figures = compute()
        context = {**figures, "product": product, "bucket": bucket, "flow_type": flow_type}
        figures["figures_html"] = render_to_string(
            "portal/_flow_figures.html", {**context, "query": urlencode(query)}
        )
        return figures

    if cached:
        params = {**query, "scatter_limit": scatter_limit}
        figures = metrics_selectors.cached_per_reach(
            request.user, product, "flow-page", params, compute_with_html
        )
    else:
        figures = compute()
    return {
        "product": product,
        "form": form,
        "errors": form.messages(),
        "window": window,
        "bucket": bucket,
        "flow_type": flow_type,
        "query": urlencode(query),
        **figures,
    }


def _flow_figures(user, product, window, bucket, flow_type, scatter_limit: int | None) -> dict:
    """The flow dashboard's numbers, as plain data (no request, user or form in them): cacheable."""
    metrics = metrics_selectors.flow_metrics(user, product, window, bucket, flow_type=flow_type)
    done_points = _done_points(user, product, metrics, flow_type, scatter_limit)
    tables = _tables(product, metrics, flow_type, done_points)
    return {"metrics": metrics, "tables": tables, "charts": _chart_data(tables)}


def _done_points(user, product, metrics: dict, flow_type, limit: int | None) -> list[tuple]:
    """(artifact id, key, done at, flow time) of the latest items done in the window, the latest first:
    the same items as the metrics (one query, on the index of done_at)."""
    window = metrics["window"]
    rollups = metrics_selectors.item_rollups_scoped(user, product, flow_type=flow_type)
    return list(
        rollups.filter(done_at__gte=window["start"], done_at__lt=window["end"])
        .order_by("-done_at", "-artifact_id")
        .values_list("artifact_id", "artifact__key", "done_at", "flow_time")[:limit]
    )


def _items_url(product, done_after, done_before, flow_type=None, **narrowing) -> str:
    query = {"done_after": done_after.isoformat(), "done_before": done_before.isoformat(), **narrowing}
    if flow_type:
        query["type"] = flow_type
    return f"{reverse('portal:items', args=[product.slug])}?{urlencode(query)}"


def _tables(product, metrics: dict, flow_type, done_points: list[tuple]) -> dict:
    """Each chart's table: a caption, column headings and rows (numbers in display units); `drill`
    heads a column of links to the items behind each row."""
    types = list(metrics["velocity"]["by_type"])
    for bucket in metrics["velocity"]["buckets"]:
        types += [slug for slug in bucket["by_type"] if slug not in types]
    type_slug = flow_type.slug if flow_type else None
    velocity_rows = []
    for bucket in metrics["velocity"]["buckets"]:
        velocity_rows.append(
            {
                "cells": [
                    bucket["start"].date().isoformat(),
                    *(bucket["by_type"].get(slug, 0) for slug in types),
                    bucket["count"],
                ],
                "url": _items_url(product, bucket["done_after"], bucket["done_before"], type_slug),
                "type_urls": {
                    slug: _items_url(product, bucket["done_after"], bucket["done_before"], slug)
                    for slug in types
                },
            }
        )
    allocation = metrics["allocation"] or {}
    target, deviation = allocation.get("target") or {}, allocation.get("deviation") or {}
    done = metrics["distribution"]["done"]
    dist_types = list(done["counts"]) + [slug for slug in target if slug not in done["counts"]]
    flow_time = metrics["flow_time"]
    window = metrics["window"]
    p95 = flow_time["p95"]
    trace_url = trace_urls()
    return {
        "velocity": {
            "caption": "Flow Velocity: items done per bucket, by type",
            "columns": ["Bucket start", *types, "Total"],
            "types": types,
            "rows": velocity_rows,
            "drill": "Items done in this bucket",
        },
        "distribution": {
            "caption": "Flow Distribution: share of items done in the window, against the target allocation",
            "columns": ["Type", "Done", "Share %", "Target %", "Deviation (points)"],
            "rows": [
                {
                    "cells": [
                        slug,
                        done["counts"].get(slug, 0),
                        _percent(done["shares"].get(slug)),
                        _percent(target.get(slug)),
                        _percent(deviation.get(slug)),
                    ]
                }
                for slug in dist_types
            ],
        },
        "flow_time": {
            "caption": "Flow Time of items done in the window: histogram, in days",
            "columns": ["From (days)", "To (days)", "Items"],
            "rows": [
                {
                    "cells": [_days(bar["lower"]), _days(bar["upper"]), bar["count"]],
                    "url": _items_url(
                        product,
                        window["start"],
                        window["end"],
                        type_slug,
                        flow_time_from=bar["lower"],
                        flow_time_below=bar["upper"],
                    ),
                }
                for bar in flow_time["histogram"]
            ],
            "percentiles": {
                "p50": _days(flow_time["p50"]),
                "p85": _days(flow_time["p85"]),
                "p95": _days(flow_time["p95"]),
            },
            "drill": "Items in this range",
        },
        "scatter": {
            "caption": "Flow Time of each item done in the window, the latest first (above p95: an outlier)",
            "columns": ["Item", "Done (UTC)", "Flow time (days)", "Above p95"],
            "rows": [_scatter_row(point, p95, trace_url) for point in done_points],
            "total": flow_time["count"],
        },
        "load": {
            "caption": "Flow Load: items in progress at the end of each day",
            "columns": ["Day", *metrics["distribution"]["load"]["counts"], "Total"],
            "rows": [
                {
                    "cells": [
                        day["day"].isoformat(),
                        *(day["by_type"].get(slug, 0) for slug in metrics["distribution"]["load"]["counts"]),
                        day["total"],
                    ]
                }
                for day in metrics["load"]["days"]
            ],
        },
        "efficiency": {
            "caption": "Flow Efficiency of the items done in each bucket (active time / flow time)",
            "columns": ["Bucket start", "Items done", "Efficiency %"],
            "rows": [
                {
                    "cells": [
                        bucket["start"].date().isoformat(),
                        bucket["count"],
                        _percent(bucket["efficiency"]),
                    ]
                }
                for bucket in metrics["efficiency"]["buckets"]
            ],
        },
    }


def _scatter_row(point: tuple, p95: float | None, trace_url) -> dict:
    """A done item's row in the scatter's table (cells, for the CSV too) and its point on the chart."""
    artifact_id, key, done_at, seconds = point
    url, done = trace_url(artifact_id), done_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    outlier = p95 is not None and seconds > p95
    return {
        "cells": [Link(key, url), done, _days(seconds), "yes" if outlier else ""],
        "point": {
            "x": int(done_at.timestamp() * 1000),
            "y": _days(seconds),
            "key": key,
            "url": url,
            "done": done,
            "outlier": outlier,
        },
    }


def _chart_data(tables: dict) -> dict:
    """What the charts draw, for the JSON data island (the same numbers as the tables)."""
    velocity = tables["velocity"]
    return {
        "velocity": {
            "labels": [row["cells"][0] for row in velocity["rows"]],
            "types": velocity["types"],
            "series": {
                slug: [row["cells"][1 + index] for row in velocity["rows"]]
                for index, slug in enumerate(velocity["types"])
            },
            "urls": [row["url"] for row in velocity["rows"]],
            "type_urls": [row["type_urls"] for row in velocity["rows"]],
        },
        "distribution": {
            "labels": [row["cells"][0] for row in tables["distribution"]["rows"]],
            "share": [row["cells"][2] for row in tables["distribution"]["rows"]],
            "target": [row["cells"][3] for row in tables["distribution"]["rows"]],
        },
        "flow_time": {
            "bars": [
                {"lower": row["cells"][0], "upper": row["cells"][1], "count": row["cells"][2]}
                for row in tables["flow_time"]["rows"]
            ],
            "percentiles": tables["flow_time"]["percentiles"],
            "urls": [row["url"] for row in tables["flow_time"]["rows"]],
        },
        "scatter": {
            "points": [row["point"] for row in tables["scatter"]["rows"]],
            "percentiles": tables["flow_time"]["percentiles"],
        },
        "load": {
            "labels": [row["cells"][0] for row in tables["load"]["rows"]],
            "totals": [row["cells"][-1] for row in tables["load"]["rows"]],
        },
        "efficiency": {
            "labels": [row["cells"][0] for row in tables["efficiency"]["rows"]],
            "values": [row["cells"][2] for row in tables["efficiency"]["rows"]],
        },
    }


@login_required
def product_flow(request, slug: str):
    context = _flow_context(request, slug, SCATTER_MAX_POINTS, cached=True)
    return render(request, "portal/flow.html", context)


@login_required
def product_flow_csv(request, slug: str, chart: str):
    if chart not in CHARTS:
        raise Http404(f"no chart {chart!r}")
    context = _flow_context(request, slug, scatter_limit=None if chart == "scatter" else 0)
    table = context["tables"][chart]
    rows = (row["cells"] for row in table["rows"])
    return csv_response(f"{context['product'].slug}-{chart}.csv", table["columns"], rows)


def _csv_cell(value):
    if isinstance(value, Link):
        value = str(value.text)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


# --- items behind a bucket -----------------------------------------------------------------------------


@login_required
def product_items(request, slug: str):
    product = metrics_selectors.product_get_visible(request.user, slug)
    form = DoneItemsForm(request.GET)
    rollups = metrics_selectors.item_rollup_list(request.user).filter(product=product, done_at__isnull=False)
    errors = []
    api_query = {"product": product.pk, "format": "csv"}
    flow_time_range = None
    if form.is_valid():
        params = form.cleaned_data
        if params["done_after"]:
            rollups = rollups.filter(done_at__gte=params["done_after"])
            api_query["done_after"] = params["done_after"].isoformat()
        if params["done_before"]:
            rollups = rollups.filter(done_at__lt=params["done_before"])
            api_query["done_before"] = params["done_before"].isoformat()
        if params["type"]:
            rollups = rollups.filter(flow_item_type__slug=params["type"])
            api_query["type"] = params["type"]
        lower, upper = params["flow_time_from"], params["flow_time_below"]
        if lower is not None:
            rollups = rollups.filter(flow_time__gte=lower)
        if upper is not None:
            rollups = rollups.filter(flow_time__lt=upper)
        if lower is not None or upper is not None:
            # The API's CSV has no flow time filter: no download rather than one of other items.
            api_query = None
            flow_time_range = (
                f"from {_days(lower or 0)} to under {_days(upper) if upper is not None else '∞'} days"
            )
    else:
        errors = form.messages()
        rollups = rollups.none()
    page = Paginator(rollups.order_by("-done_at", "artifact_id"), ITEMS_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    rows = [
        {
            "rollup": rollup,
            "flow_time": _days(rollup.flow_time),
            "lead_time": _days(rollup.lead_time),
            "efficiency": _percent(rollup.efficiency),
        }
        for rollup in page
    ]
    paging = request.GET.copy()
    paging.pop("page", None)
    context = {
        "product": product,
        "form": form,
        "errors": errors,
        "page": page,
        "rows": rows,
        "paging": paging.urlencode(),
        "csv_url": f"{reverse('metrics-item-list')}?{urlencode(api_query)}" if api_query else None,
        "flow_time_range": flow_time_range,
    }
    return render(request, "portal/items.html", context)


# --- product items and artifacts -----------------------------------------------------------------------


@login_required
def product_detail(request, slug: str):
    product = selectors.product_get_for(request.user, slug)
    page = Paginator(selectors.artifact_list_for(request.user, product), 50).get_page(request.GET.get("page"))
    rows = [
        {"artifact": artifact, "origin": selectors.origin_of(request.user, artifact)} for artifact in page
    ]
    return render(request, "portal/product.html", {"product": product, "page": page, "rows": rows})


@login_required
def artifact_detail(request, pk: int):
    artifact = selectors.artifact_get_for(request.user, pk)
    hidden = selectors.hidden_fields_for(request.user, artifact)
    context = {
        "artifact": artifact,
        "origin": selectors.origin_of(request.user, artifact),
        "fields": {name: value for name, value in artifact.fields.items() if name not in hidden},
        "show_value": "value" not in hidden,
        "transitions": artifact.transitions.order_by("at", "id"),
        "links": selectors.links_of(request.user, artifact),
    }
    return render(request, "portal/artifact.html", context)
