"""An identity cluster drawn as an inline SVG: member records as nodes, scored pairs as edges.

Pages run no script, so the graph is drawn on the server: a pure function from ids, labels and weights
to markup. The layout is deterministic (nodes evenly on a circle, in the order given) so the same cluster
always looks the same and a screenshot can be compared. Every piece of text is escaped; styling is by
class (``web.css``: ``graph``, ``node``, ``edge``, ``edge uncertain``, ``edge cut``), since the pages'
CSP forbids inline styles. The SVG is an image with a title and a description for screen readers; the
page also lists the same pairs in a table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 640
NODE_RADIUS = 22
LABEL_ROOM = 36
"""Room between the circle of nodes and the edge of the drawing, for the labels outside the nodes."""
SIDE_LABEL_ROOM = 130
"""Room for a label beside a node on the left or right (a source name or a short record id)."""
EDGE_KINDS = ("link", "uncertain", "cut", "manual")


@dataclass(frozen=True)
class GraphNode:
    id: str
    label: str
    """Short text under the node, e.g. the record's source."""
    caption: str = ""
    """Text inside the node, e.g. its number in the pairs table."""


@dataclass(frozen=True)
class GraphEdge:
    a: str
    b: str
    weight: float | None
    kind: str = "link"
    """``link`` (scored and linked), ``uncertain`` (near the threshold, undecided), ``cut`` (a link
    clustering refused) or ``manual`` (joined by a person's decision, no score)."""


def _class(kind: str) -> str:
    return {"uncertain": "edge uncertain", "cut": "edge cut"}.get(kind, "edge")


def layout(count: int, width: int = WIDTH) -> tuple[int, list[tuple[float, float]]]:
    """The SVG height and each node's centre: one node in the middle, more evenly on a circle,
    starting at the top and going clockwise."""
    height = 140 if count <= 1 else min(width, 320 + 16 * count)
    cx, cy = width / 2, height / 2
    if count <= 1:
        return height, [(cx, cy)] * count
    radius = min(cy - NODE_RADIUS - LABEL_ROOM, cx - NODE_RADIUS - SIDE_LABEL_ROOM)
    points = []
    for index in range(count):
        angle = -math.pi / 2 + 2 * math.pi * index / count
        points.append((round(cx + radius * math.cos(angle), 1), round(cy + radius * math.sin(angle), 1)))
    return height, points


def _label_position(point: tuple[float, float], centre: tuple[float, float]) -> tuple[float, float, str]:
    """A node's label just outside the circle of nodes, away from the edges that run inwards: above a
    node at the top, below one at the bottom, beside one on the left or right."""
    x, y = point
    dx, dy = x - centre[0], y - centre[1]
    if abs(dx) < 1 and abs(dy) < 1:
        return x, round(y + NODE_RADIUS + 16, 1), "middle"
    if abs(dy) >= abs(dx):
        offset = -(NODE_RADIUS + 8) if dy < 0 else NODE_RADIUS + 16
        return x, round(y + offset, 1), "middle"
    shift = NODE_RADIUS + 6
    return round(x + shift if dx > 0 else x - shift, 1), round(y + 4, 1), "start" if dx > 0 else "end"


def cluster_svg(
    nodes: Sequence[GraphNode], edges: Sequence[GraphEdge], *, title: str, description: str = ""
) -> Markup:
    """The cluster as an ``<svg>`` element (markup safe to insert in a template as is)."""
    height, points = layout(len(nodes))
    where = {node.id: point for node, point in zip(nodes, points, strict=True)}
    parts = [
        f'<svg class="graph" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" role="img" aria-labelledby="graph-title graph-desc">',
        f'<title id="graph-title">{escape(title)}</title>',
        f'<desc id="graph-desc">{escape(description)}</desc>',
    ]
    for edge in edges:
        if edge.a not in where or edge.b not in where:
            continue
        (x1, y1), (x2, y2) = where[edge.a], where[edge.b]
        weight = "" if edge.weight is None else f"{edge.weight:+.1f}"
        parts.append(
            f'<g data-kind="{escape(edge.kind)}"><line class="{_class(edge.kind)}" '
            f'x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke-width="2"/>'
        )
        label = weight or ("by hand" if edge.kind == "manual" else "")
        if label:
            # 40 % of the way along, not half: crossing diagonals would put their labels on one spot.
            mx, my = round(x1 + (x2 - x1) * 0.4, 1), round(y1 + (y2 - y1) * 0.4 - 4, 1)
            parts.append(
                f'<text class="weight" x="{mx}" y="{my}" text-anchor="middle">{escape(label)}</text>'
            )
        parts.append("</g>")
    centre = (WIDTH / 2, height / 2)
    for node in nodes:
        x, y = where[node.id]
        lx, ly, anchor = _label_position((x, y), centre)
        parts.append(
            f'<g data-record="{escape(node.id)}"><circle class="node" cx="{x}" cy="{y}" r="{NODE_RADIUS}"/>'
            f'<text x="{x}" y="{round(y + 4, 1)}" text-anchor="middle">{escape(node.caption)}</text>'
            f'<text class="label" x="{lx}" y="{ly}" text-anchor="{anchor}">{escape(node.label)}</text></g>'
        )
    parts.append("</svg>")
    # Safe: every piece of text above went through escape(); the rest is numbers and fixed markup.
    return Markup("".join(parts))  # noqa: S704
