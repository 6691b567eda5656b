"""The integration landscape: the tools around the central store, and what flows between them.

Drawn server-side as SVG: each visible tool connection on a circle around the store, a spoke to it
coloured by the connection's health (its last sync, its open sync errors), integrations as curves through
the store coloured by their pairs' states, trace links counted between tools, and link rules. The tables
below the picture say the same in text. A partner sees its own connections only.
"""

import math
from dataclasses import dataclass

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse

from vsm import selectors

WIDTH, HEIGHT = 760, 560
NODE_WIDTH, NODE_HEIGHT = 156, 46
STORE_RADIUS = 62
RING_MARGIN = 40
PROBLEM_PAIR_STATES = ("conflict", "waiting", "target_gone")
RETRY_PAIR_STATES = ("retrying", "creating")


def connection_health(connection) -> str:
    """ok, warning (open sync errors, but the last sync worked), error (the last attempt failed) or
    unknown (never synced)."""
    failed = connection.healthy is False or connection.last_sync_outcome == "failed"
    if failed:
        return "error"
    if connection.open_errors:
        return "warning"
    if connection.healthy is None and connection.last_sync_at is None:
        return "unknown"
    return "ok"


def integration_health(integration) -> str:
    """off (disabled), error (pairs wait for a person), warning (pairs being retried or created), ok
    (ran, every pair in step) or unknown (never ran)."""
    if not integration.enabled:
        return "off"
    if any(getattr(integration, f"pairs_{state}") for state in PROBLEM_PAIR_STATES):
        return "error"
    if any(getattr(integration, f"pairs_{state}") for state in RETRY_PAIR_STATES):
        return "warning"
    return "ok" if integration.last_run_at else "unknown"


def ring_positions(count: int, center: tuple[float, float], radius: tuple[float, float]):
    """count points evenly on an ellipse, the first at the top, clockwise."""
    (cx, cy), (rx, ry) = center, radius
    return [
        (
            round(cx + rx * math.cos(-math.pi / 2 + 2 * math.pi * index / count), 1),
            round(cy + ry * math.sin(-math.pi / 2 + 2 * math.pi * index / count), 1),
        )
        for index in range(count)
    ]


@dataclass(frozen=True, slots=True)
class Edge:
    anchor: str  # the id of its details below the picture
    layer: str  # integration, links, rule
    path: str
    health: str
    label: str  # what it carries, shown with the "types and models" toggle
    title: str
    label_x: float
    label_y: float
    weight: int = 2


def _curve(start, end, bend):
    """A quadratic curve from start to end through a control point `bend` (and its label point)."""
    (x1, y1), (x2, y2), (bx, by) = start, end, bend
    label = (round((x1 + 2 * bx + x2) / 4, 1), round((y1 + 2 * by + y2) / 4, 1))
    return f"M{x1},{y1} Q{bx},{by} {x2},{y2}", label


def _offset_bend(start, end, center, factor):
    """A control point off the straight line between two tools, away from the store."""
    (x1, y1), (x2, y2), (cx, cy) = start, end, center
    mx, my = (x1 + x2) / 2, (y1 + y2) / 2
    return round(mx + (mx - cx) * factor, 1), round(my + (my - cy) * factor, 1)


def _admin_url(name: str, pk: int) -> str | None:
    try:
        return reverse(f"admin:connectors_{name}_change", args=[pk])
    except NoReverseMatch:
        return None


def landscape_picture(connections, mappings, link_counts, rules, integrations, *, admin: bool) -> dict:
    """Place the tools and draw the edges (pure: it reads what it is given)."""
    center = (WIDTH / 2, HEIGHT / 2)
    radius = (WIDTH / 2 - NODE_WIDTH / 2 - RING_MARGIN / 2, HEIGHT / 2 - NODE_HEIGHT / 2 - RING_MARGIN / 2)
    places = dict(
        zip((c.pk for c in connections), ring_positions(len(connections), center, radius), strict=True)
    )
    by_connection: dict[int, list[dict]] = {}
    for mapping in mappings:
        by_connection.setdefault(mapping["connection_id"], []).append(mapping)
    nodes = []
    for connection in connections:
        x, y = places[connection.pk]
        own = by_connection.get(connection.pk, [])
        nodes.append(
            {
                "connection": connection,
                "health": connection_health(connection),
                "x": x,
                "y": y,
                "box_x": round(x - NODE_WIDTH / 2, 1),
                "box_y": round(y - NODE_HEIGHT / 2, 1),
                "mappings": own,
                "models": sorted({mapping["artifact_model__name"] for mapping in own}),
                "spoke_label_x": round((x + center[0]) / 2, 1),
                "spoke_label_y": round((y + center[1]) / 2, 1),
                "admin_url": _admin_url("toolconnection", connection.pk) if admin else None,
            }
        )
    edges = []
    for integration in integrations:
        source, target = integration.source_scope.connection_id, integration.target_scope.connection_id
        path, (lx, ly) = _curve(places[source], places[target], center)
        edges.append(
            Edge(
                anchor=f"integration-{integration.pk}",
                layer="integration",
                path=path,
                health=integration_health(integration),
                label=integration.artifact_model.name,
                title=f"Integration {integration.name}: {integration.artifact_model.name} items from "
                f"{integration.source_scope.connection.name} to {integration.target_scope.connection.name}",
                label_x=lx,
                label_y=ly,
                weight=3,
            )
        )
    names = {connection.pk: connection.name for connection in connections}
    for row in link_counts:
        source, target = row["source__connection_id"], row["target__connection_id"]
        if source == target:
            continue
        count = f"{row['links']} link{'' if row['links'] == 1 else 's'}"
        bend = _offset_bend(places[source], places[target], center, 0.25)
        path, (lx, ly) = _curve(places[source], places[target], bend)
        edges.append(
            Edge(
                anchor=f"links-{source}-{target}",
                layer="links",
                path=path,
                health="links",
                label=count,
                title=f"{count} of trace from {names[source]} items to {names[target]} items",
                label_x=lx,
                label_y=ly,
                weight=1 + min(5, int(math.log10(row["links"] + 1) * 2)),
            )
        )
    for rule in rules:
        bend = _offset_bend(places[rule.connection_id], places[rule.target_connection_id], center, 0.5)
        path, (lx, ly) = _curve(places[rule.connection_id], places[rule.target_connection_id], bend)
        edges.append(
            Edge(
                anchor=f"rule-{rule.pk}",
                layer="rule",
                path=path,
                health="ok" if rule.enabled else "off",
                label=rule.get_kind_display(),
                title=f"Link rule {rule.name}: {names[rule.connection_id]} items name "
                f"{names[rule.target_connection_id]} items ({rule.get_kind_display()})",
                label_x=lx,
                label_y=ly,
            )
        )
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "center_x": center[0],
        "center_y": center[1],
        "store_radius": STORE_RADIUS,
        "node_width": NODE_WIDTH,
        "node_height": NODE_HEIGHT,
        "nodes": nodes,
        "edges": edges,
    }


@login_required
def landscape(request):
    connections = list(selectors.connection_list_for(request.user))
    ids = [connection.pk for connection in connections]
    mappings = list(selectors.type_mappings_of(ids))
    link_counts = selectors.link_counts_between(request.user, ids)
    rules = list(selectors.link_rules_between(ids))
    integrations = list(selectors.integrations_between(request.user, ids))
    admin = request.user.is_staff
    picture = landscape_picture(connections, mappings, link_counts, rules, integrations, admin=admin)
    mapped = len({mapping["connection_id"] for mapping in mappings})
    names = {connection.pk: connection.name for connection in connections}
    context = {
        "picture": picture,
        "integrations": [
            {
                "integration": integration,
                "health": integration_health(integration),
                "pairs": {
                    state: getattr(integration, f"pairs_{state}")
                    for state in ("ok", *PROBLEM_PAIR_STATES, *RETRY_PAIR_STATES)
                },
                "admin_url": _admin_url("integration", integration.pk) if admin else None,
            }
            for integration in integrations
        ],
        "link_counts": [
            {
                **row,
                "source": names[row["source__connection_id"]],
                "target": names[row["target__connection_id"]],
                "anchor": f"links-{row['source__connection_id']}-{row['target__connection_id']}",
            }
            for row in link_counts
        ],
        "rules": [
            {"rule": rule, "admin_url": _admin_url("linkrule", rule.pk) if admin else None} for rule in rules
        ],
        "mapped_tools": mapped,
        "type_mappings": len(mappings),
        "point_to_point": mapped * (mapped - 1) // 2,
    }
    return render(request, "portal/landscape.html", context)
