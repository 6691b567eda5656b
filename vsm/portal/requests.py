"""Customer requests for field teams: where each stands, what is at stake, and when it may ship.

The delivery figures are metrics.selectors.request_deliveries (the lead-time API's); the forecast is
metrics' Monte Carlo over the product's daily throughput for the request's remaining work items. A
partner never sees the request fields marked internal (customer account, revenue, deal-breaker), nor may
it filter by them.
"""

import csv
from dataclasses import dataclass
from urllib.parse import urlencode

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from metrics import calculators
from metrics import selectors as metrics_selectors
from vsm import selectors
from vsm.portal.views import _csv_cell

PAGE_SIZE = 50
STATUS_SCAN_LIMIT = 1000  # requests whose delivery is computed to filter by status
EXPORT_LIMIT = 10_000
# Deliveries are looked for this many links downstream of a request (one query each): request, feature,
# epic, story, commit, build, deployment or release. With the page's other queries (12 at most), 20.
DELIVERY_MAX_LEVELS = 7
FORECAST_HISTORY_DAYS = 90
FORECAST_CONFIDENCE = 85
DAY = 86400.0
NOT_STARTED, IN_PROGRESS, DELIVERED, CANCELED = "not_started", "in_progress", "delivered", "canceled"
STATUS_LABELS = {
    NOT_STARTED: "Not started",
    IN_PROGRESS: "In progress",
    DELIVERED: "Delivered",
    CANCELED: "Canceled",
}
INTERNAL_FILTERS = {"account": "customer_account", "deal_breaker": "deal_breaker"}


class RequestFilterForm(forms.Form):
    product = forms.SlugField(required=False, max_length=80, label="Product")
    status = forms.ChoiceField(
        required=False, label="Status", choices=[("", "Any status"), *STATUS_LABELS.items()]
    )
    deal_breaker = forms.ChoiceField(
        required=False, label="Deal-breaker", choices=[("", "Any"), ("yes", "Yes"), ("no", "No")]
    )
    account = forms.CharField(required=False, max_length=200, strip=True, label="Account")

    def __init__(self, data, *, hidden_fields: set[str]):
        super().__init__(data)
        self.hidden_fields = hidden_fields
        for name, field in INTERNAL_FILTERS.items():
            if field in hidden_fields:
                del self.fields[name]

    def clean(self):
        cleaned = super().clean()
        for name, field in INTERNAL_FILTERS.items():
            if field in self.hidden_fields and self.data.get(name):
                self.add_error(None, f"Filtering by {name.replace('_', '-')} is not available to you.")
        return cleaned


def _messages(form) -> list[str]:
    out = []
    for name, errors in form.errors.items():
        label = form.fields[name].label if name in form.fields else None
        out.extend(f"{label}: {error}" if label else error for error in errors)
    return out


@dataclass(frozen=True, slots=True)
class Filters:
    product: object = None
    status: str = ""
    deal_breaker: bool | None = None
    account: str = ""


def _filters(request, hidden: set[str], slug: str | None) -> tuple[RequestFilterForm, Filters, list[str]]:
    """The chosen filters; bad or out-of-reach ones become a message and are left out, never a 500.

    A product in the path (a product's own requests page) answers 404 when out of reach, like any URL.
    """
    form = RequestFilterForm(request.GET, hidden_fields=hidden)
    form.is_valid()
    errors = _messages(form)
    data = form.cleaned_data
    product = None
    if slug is not None:
        product = metrics_selectors.product_get_visible(request.user, slug)
    elif data.get("product"):
        try:
            product = metrics_selectors.product_get_visible(request.user, data["product"])
        except Http404:
            errors.append(f"No product {data['product']!r} among the products you can see: showing them all.")
    deal_breaker = {"yes": True, "no": False}.get(data.get("deal_breaker") or "")
    return form, Filters(product, data.get("status") or "", deal_breaker, data.get("account") or ""), errors


def _query(filters: Filters) -> str:
    """The accepted filters as a query string, for the pages and the CSV link (a refused one left out)."""
    query = {
        "product": filters.product.slug if filters.product else "",
        "status": filters.status,
        "deal_breaker": {True: "yes", False: "no"}.get(filters.deal_breaker, ""),
        "account": filters.account,
    }
    return urlencode({name: value for name, value in query.items() if value})


def delivery_status(figures, trace, nodes: dict) -> str:
    """Delivered, canceled, not started (no work item downstream has left New) or in progress."""
    if figures.delivered:
        return DELIVERED
    if figures.canceled:
        return CANCELED
    work = [
        nodes[node]
        for node in trace.nodes
        if node in nodes
        and nodes[node].model in calculators.WORK_ITEM_MODELS
        and nodes[node].state != calculators.CANCELED
    ]
    if not any(node.state != calculators.NEW for node in work):
        return NOT_STARTED
    return IN_PROGRESS


class Forecasts:
    """When a request's remaining work items may be done, at its product's pace (85% confidence).

    The products' throughput is read once for all of them (their last FORECAST_HISTORY_DAYS days, as the
    user may see it); each remaining count is simulated once per product.
    """

    def __init__(self, user, products, now):
        self.now = now
        self.throughput = metrics_selectors.recent_daily_done_counts(
            user, products, FORECAST_HISTORY_DAYS, now
        )
        self.dates: dict[tuple[int, int], object] = {}

    def date_for(self, product, remaining: int):
        throughput = self.throughput.get(product.pk)
        if not throughput or not any(throughput):
            return None
        key = (product.pk, remaining)
        if key not in self.dates:
            try:
                dates = calculators.monte_carlo_when(
                    throughput,
                    remaining,
                    metrics_selectors.local_today(product, self.now),
                    trials=metrics_selectors.FORECAST_TRIALS,
                    seed=metrics_selectors.FORECAST_SEED,
                    max_days=metrics_selectors.FORECAST_MAX_DAYS,
                )
                self.dates[key] = dates[FORECAST_CONFIDENCE]
            except ValueError:
                self.dates[key] = None
        return self.dates[key]


def _rows(user, requests: list, hidden: set[str], now) -> list[dict]:
    """One row per request (the deliveries computed in one go, a fixed number of queries)."""
    deliveries = metrics_selectors.request_deliveries(
        user, [artifact.pk for artifact in requests], now, max_levels=DELIVERY_MAX_LEVELS
    )
    statuses = {
        request_id: delivery_status(figures, deliveries.traces[request_id], deliveries.nodes)
        for request_id, figures in deliveries.figures.items()
    }
    waiting = {
        artifact.product_id: artifact.product
        for artifact in requests
        if statuses.get(artifact.pk) == IN_PROGRESS
        and deliveries.figures[artifact.pk].work_items > deliveries.figures[artifact.pk].work_items_done
    }
    forecasts = Forecasts(user, list(waiting.values()), now)
    rows = []
    for artifact in requests:
        figures = deliveries.figures.get(artifact.pk)
        if figures is None:
            continue
        trace, nodes = deliveries.traces[artifact.pk], deliveries.nodes
        status = statuses[artifact.pk]
        features = [
            nodes[node]
            for node in trace.edges.get(artifact.pk, ())
            if node in nodes and nodes[node].model in calculators.WORK_ITEM_MODELS
        ]
        remaining = figures.work_items - figures.work_items_done
        forecast = None
        if status == IN_PROGRESS and remaining:
            forecast = forecasts.date_for(artifact.product, remaining)
        delivered_by = nodes.get(figures.delivered_by) if figures.delivered_by else None
        span = figures.lead_time if figures.delivered else figures.age
        fields = artifact.fields or {}
        value = artifact.value if artifact.value is not None else fields.get("revenue")
        rows.append(
            {
                "artifact": artifact,
                "account": None if "customer_account" in hidden else fields.get("customer_account"),
                "value": None if {"value", "revenue"} & hidden else value,
                "deal_breaker": None if "deal_breaker" in hidden else bool(fields.get("deal_breaker")),
                "status": status,
                "status_label": STATUS_LABELS[status],
                "segment": figures.furthest_segment,
                "delivered_at": figures.delivered_at,
                "closed_at": figures.closed_at,
                "closed_as": figures.closed_as,
                "delivered_by": delivered_by,
                "features": features,
                "work_items": figures.work_items,
                "work_items_done": figures.work_items_done,
                "remaining": remaining,
                "days": None if span is None else round(span / DAY, 1),
                "forecast": forecast,
            }
        )
    return rows


def _requests_and_rows(request, hidden, filters: Filters, now, *, limit: int):
    found = selectors.request_list_for(
        request.user, product=filters.product, deal_breaker=filters.deal_breaker, account=filters.account
    )
    candidates = list(found[: limit + 1])
    cut = len(candidates) > limit
    rows = _rows(request.user, candidates[:limit], hidden, now)
    if filters.status:
        rows = [row for row in rows if row["status"] == filters.status]
    return rows, cut


@login_required
def request_list(request, slug: str | None = None):
    hidden = selectors.hidden_fields_of_model_for(request.user, "request")
    form, filters, errors = _filters(request, hidden, slug)
    now = timezone.now()
    if filters.status:
        # The status is known only once computed: compute it for the newest requests, then page.
        rows, cut = _requests_and_rows(request, hidden, filters, now, limit=STATUS_SCAN_LIMIT)
        page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
        page_rows = list(page)
    else:
        found = selectors.request_list_for(
            request.user, product=filters.product, deal_breaker=filters.deal_breaker, account=filters.account
        )
        page = Paginator(found, PAGE_SIZE).get_page(request.GET.get("page"))
        page_rows, cut = _rows(request.user, list(page), hidden, now), False
    paging = _query(filters)
    context = {
        "form": form,
        "errors": errors,
        "filters": filters,
        "page": page,
        "rows": page_rows,
        "cut": cut,
        "scan_limit": STATUS_SCAN_LIMIT,
        "show_account": "customer_account" not in hidden,
        "show_value": not ({"value", "revenue"} & hidden),
        "show_deal_breaker": "deal_breaker" not in hidden,
        "products": selectors.product_choices_for(request.user),
        "paging": paging,
        "csv_url": f"{reverse('portal:requests-csv')}?{paging}",
        "confidence": FORECAST_CONFIDENCE,
        "history_days": FORECAST_HISTORY_DAYS,
        "delivery_levels": DELIVERY_MAX_LEVELS,
    }
    return render(request, "portal/requests.html", context)


@login_required
def request_list_csv(request):
    hidden = selectors.hidden_fields_of_model_for(request.user, "request")
    _form, filters, _errors = _filters(request, hidden, None)
    rows, _cut = _requests_and_rows(request, hidden, filters, timezone.now(), limit=EXPORT_LIMIT)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="customer-requests.csv"'
    writer = csv.writer(response, lineterminator="\r\n")
    columns = ["key", "title", "product", "created_at"]
    if "customer_account" not in hidden:
        columns.append("account")
    if not ({"value", "revenue"} & hidden):
        columns.append("value")
    if "deal_breaker" not in hidden:
        columns.append("deal_breaker")
    columns += [
        "status",
        "furthest_segment",
        "delivered_at",
        "delivered_by",
        "closed_at",
        "closed_as",
        "features",
        "lead_time_or_age_days",
        "forecast_85",
    ]
    writer.writerow(columns)
    for row in rows:
        artifact = row["artifact"]
        values = {
            "key": artifact.key,
            "title": artifact.title,
            "product": artifact.product.slug,
            "created_at": artifact.created_at.isoformat(),
            "account": row["account"],
            "value": row["value"],
            "deal_breaker": "yes" if row["deal_breaker"] else "no",
            "status": row["status"],
            "furthest_segment": row["segment"],
            "delivered_at": row["delivered_at"].isoformat() if row["delivered_at"] else None,
            "delivered_by": row["delivered_by"].key if row["delivered_by"] else None,
            "closed_at": row["closed_at"].isoformat() if row["closed_at"] else None,
            "closed_as": row["closed_as"],
            "features": " ".join(node.key for node in row["features"]),
            "lead_time_or_age_days": row["days"],
            "forecast_85": row["forecast"].isoformat() if row["forecast"] else None,
        }
        writer.writerow(_csv_cell(values[column]) for column in columns)
    return response
