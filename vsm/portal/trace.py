"""Traceability: find an item by key or title, and follow its whole chain across tools.

The chain is metrics.selectors.trace_chain (one query a level, bounded); the end-to-end lead time of
each customer request in it is metrics.calculators.request_lead_time, the same figure as the lead-time
API. The graph is drawn here as SVG, server-side, with a table of the same nodes as its text version.
"""

from dataclasses import dataclass

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render
from django.utils import timezone

from metrics import calculators
from metrics import selectors as metrics_selectors
from vsm import selectors
from vsm.choices import LinkKind

SEARCH_LIMIT = 50
CHAIN_MAX_NODES = 500
# One query a level; with the page's others (session, user, reach, the item, the chain's artifacts and
# ledgers, pending links: 11 at most) the page stays within 20 queries. Nine levels hold a story's whole
# chain: three up to its request, and from there six down to the releases of the request's other work.
CHAIN_MAX_LEVELS = 9
REQUESTS_SHOWN = 5
DAY = 86400.0

# Columns of the graph, left to right: where work comes from to where it ships.
MODEL_COLUMNS = {
    "request": 0,
    "case": 0,
    "feature": 1,
    "epic": 2,
    "story": 3,
    "task": 3,
    "defect": 3,
    "risk": 3,
    "debt": 3,
    "pull-request": 4,
    "commit": 4,
    "build": 5,
    "release": 6,
    "deployment": 6,
    "incident": 7,
}
OTHER_MODELS_COLUMN = 3
NODE_WIDTH, NODE_HEIGHT = 180, 58
COLUMN_GAP, ROW_GAP, MARGIN = 40, 12, 8
TIMELINE_WIDTH, TIMELINE_BAR = 640, 26


class SearchForm(forms.Form):
    q = forms.CharField(label="Key or title", min_length=2, max_length=200, strip=True)
    product = forms.SlugField(label="Product", required=False, max_length=80)


def _form_messages(form) -> list[str]:
    return [f"{form.fields[name].label}: {error}" for name, errors in form.errors.items() for error in errors]


@login_required
def trace_search(request):
    form = SearchForm(request.GET or None)
    errors, results, more, product = [], [], False, None
    if form.is_bound and form.is_valid():
        slug = form.cleaned_data["product"]
        if slug:
            try:
                product = metrics_selectors.product_get_visible(request.user, slug)
            except Http404:
                errors.append(f"No product {slug!r} among the products you can see: searched them all.")
        found = list(
            selectors.artifact_search_for(request.user, form.cleaned_data["q"], product=product)[
                : SEARCH_LIMIT + 1
            ]
        )
        results, more = found[:SEARCH_LIMIT], len(found) > SEARCH_LIMIT
    elif form.is_bound:
        errors = _form_messages(form)
    context = {
        "form": form,
        "errors": errors,
        "results": results,
        "more": more,
        "limit": SEARCH_LIMIT,
        "products": selectors.product_choices_for(request.user),
    }
    return render(request, "portal/trace_search.html", context)


# --- the chain as a graph ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlacedNode:
    id: int | str  # an artifact id, or "pending-<id>" for a link whose target is not stored yet
    x: int
    y: int
    card: dict


@dataclass(frozen=True, slots=True)
class PlacedEdge:
    path: str
    kind: str
    label: str
    pending: bool = False


def chain_layout(order, cards: dict, edges, pending) -> dict:
    """Place the nodes in columns by model (request to release), rows in walk order; edges as curves.

    Pure: `order` is the node ids in walk order, `cards` the shown artifacts by id, `edges` (source,
    target, kind) between them, `pending` the pending links (their own last column).
    """
    columns: dict[int, list[int]] = {}
    for node in order:
        if node in cards:
            column = MODEL_COLUMNS.get(cards[node]["artifact_model__slug"], OTHER_MODELS_COLUMN)
            columns.setdefault(column, []).append(node)
    used = sorted(columns)
    if pending:
        used.append(max(used, default=-1) + 1)
        columns[used[-1]] = [f"pending-{link.pk}" for link in pending]
    pending_cards = {
        f"pending-{link.pk}": {
            "key": link.target_key,
            "pending": True,
            "connection__name": link.target_connection.name,
            "connection__kind": link.target_connection.kind,
            "kind": link.get_kind_display(),
            "source": link.source_id,
            "reverse": link.reverse,
        }
        for link in pending
    }
    position: dict = {}
    placed = []
    for index, column in enumerate(used):
        x = MARGIN + index * (NODE_WIDTH + COLUMN_GAP)
        for row, node in enumerate(columns[column]):
            y = MARGIN + row * (NODE_HEIGHT + ROW_GAP)
            position[node] = (x, y)
            placed.append(PlacedNode(node, x, y, cards.get(node) or pending_cards[node]))
    kinds = dict(LinkKind.choices)
    lines = []
    for source, target, kind in edges:
        if source in position and target in position:
            lines.append(PlacedEdge(_curve(position, source, target), kind, kinds.get(kind, kind)))
    for link in pending:
        node = f"pending-{link.pk}"
        if link.source_id in position:
            label = f"{kinds.get(link.kind, link.kind)} (pending)"
            lines.append(PlacedEdge(_curve(position, link.source_id, node), link.kind, label, True))
    rows = max((len(nodes) for nodes in columns.values()), default=0)
    return {
        "nodes": placed,
        "edges": lines,
        "width": 2 * MARGIN + len(used) * NODE_WIDTH + max(0, len(used) - 1) * COLUMN_GAP,
        "height": 2 * MARGIN + rows * NODE_HEIGHT + max(0, rows - 1) * ROW_GAP,
        "node_width": NODE_WIDTH,
        "node_height": NODE_HEIGHT,
    }


def _curve(position: dict, one, other) -> str:
    """A curve from the right side of the left node to the left side of the right one (or within a
    column, from one node's right side to the other's)."""
    (x1, y1), (x2, y2) = sorted((position[one], position[other]))
    y1, y2 = y1 + NODE_HEIGHT // 2, y2 + NODE_HEIGHT // 2
    if x1 == x2:
        x = x1 + NODE_WIDTH
        return f"M{x},{y1} C{x + 30},{y1} {x + 30},{y2} {x},{y2}"
    start, end = x1 + NODE_WIDTH, x2
    middle = (start + end) // 2
    return f"M{start},{y1} C{middle},{y1} {middle},{y2} {end},{y2}"


# --- the requests' lead times as a timeline ------------------------------------------------------------


def request_timelines(request_ids, chain, nodes: dict, cards: dict, now) -> list[dict]:
    """Each customer request's end-to-end lead time and its phases, drawn as one bar each (its synced
    copies standing for it)."""
    edges = calculators.merge_copies(chain.edges, calculators.synced_originals(chain.edges))
    graph = calculators.downstream_graph(edges)
    timelines = []
    for request_id in request_ids:
        if request_id not in nodes:
            continue
        trace = calculators.trace_downstream(request_id, graph)
        figures = calculators.request_lead_time(nodes[request_id], nodes, trace, now=now)
        span = figures.lead_time if figures.delivered else figures.age
        offset, segments = 0.0, []
        for phase in calculators.PHASES:
            seconds = figures.segments[phase]
            width = TIMELINE_WIDTH * seconds / span if span else 0
            segments.append(
                {
                    "phase": phase,
                    "days": round(seconds / DAY, 1),
                    "x": round(TIMELINE_WIDTH * offset / span, 1) if span else 0,
                    "width": round(width, 1),
                    "open": not (figures.delivered or figures.canceled) and phase == figures.furthest_segment,
                }
            )
            offset += seconds
        delivered_by = cards.get(figures.delivered_by) if figures.delivered_by else None
        timelines.append(
            {
                "request": cards[request_id],
                "figures": figures,
                "days": round(span / DAY, 1) if span is not None else None,
                "segments": segments,
                "delivered_by": delivered_by,
                "width": TIMELINE_WIDTH,
                "bar": TIMELINE_BAR,
            }
        )
    return timelines


@login_required
def trace(request, pk: int):
    artifact = selectors.artifact_get_for(request.user, pk)
    now = timezone.now()
    chain = metrics_selectors.trace_chain(
        request.user, artifact.pk, max_nodes=CHAIN_MAX_NODES, max_levels=CHAIN_MAX_LEVELS
    )
    cards = selectors.artifact_cards_for(request.user, chain.node_ids)
    nodes = metrics_selectors.chain_nodes(request.user, set(cards), now)
    pending = list(selectors.pending_links_for(request.user, cards))
    copies = calculators.synced_originals(chain.edges)  # a copy of a request in the chain is that request
    requests = [
        node
        for node in dict.fromkeys(
            copies.get(node, node) for node in (artifact.pk, *sorted(chain.upstream_ids))
        )
        if node in cards and cards[node]["artifact_model__slug"] in metrics_selectors.TRACE_REQUEST_MODELS
    ]
    order = [node for node in chain.node_ids if node in cards]
    context = {
        "artifact": artifact,
        "chain": chain,
        "graph": chain_layout(order, cards, chain.edges, pending),
        "rows": [
            {**cards[node], "upstream": node in chain.upstream_ids, "start": node == artifact.pk}
            for node in order
        ],
        "pending": pending,
        "timelines": request_timelines(requests[:REQUESTS_SHOWN], chain, nodes, cards, now),
        "more_requests": max(0, len(requests) - REQUESTS_SHOWN),
        "max_nodes": CHAIN_MAX_NODES,
        "max_levels": CHAIN_MAX_LEVELS,
        "form": SearchForm(),
    }
    return render(request, "portal/trace.html", context)
