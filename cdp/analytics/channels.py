"""Channel preference: on which channel each customer actually answers, and how often each channel is
answered.

Definitions (the figures mean exactly this):

* A *contact* is an outbound interaction that is not an active kind (``[activity] active_kinds``): the
  organisation reaching out.
* A *customer action* is an inbound interaction, or an active-kind interaction whatever its direction (a
  newsletter open or click is recorded by the sender as outbound, yet it is the customer acting).
* A contact on channel c is *answered* when the same customer acts on channel c at or after it and within
  ``response_window_days``. Each contact counts at most once however many actions follow it; the response
  rate of a channel is answered contacts / contacts.
* An action is a *response* when a contact on its channel preceded it within the window, and an active-kind
  action recorded as outbound always is (it can only be a reaction to the sender's own message).
* A customer's preferred channel is the one they responded on most; a customer who never responded to a
  contact prefers the channel they acted on most (a web shopper the web). Ties go to the channel acted on
  most recently. A customer who never acted has no preference (-1). Responses come first because a
  regular web purchase says where someone shops, not where they answer when contacted.

Everything is computed on integer keys ``(customer, channel, second)`` sorted once, so matching a contact to
the next action (or an action to the last contact) is one ``np.searchsorted`` over all rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cdp.analytics.frame import INBOUND, OUTBOUND, SECONDS_PER_DAY, Dataset, Vocabulary
from cdp.analytics.privacy import Suppressor

DEFINITION = (
    "a contact (outbound, not an active kind) is answered when the customer acts on the same channel "
    "(inbound, or an active kind such as a newsletter click) within the response window after it, each "
    "contact counted once; rate = answered contacts / contacts. Preferred channel = the channel answered "
    "on most, else the one acted on most, ties to the most recent; no action, no preference."
)
_MAX_KEY = 2**62


@dataclass
class ChannelResult:
    preferred: NDArray[np.int16]
    """Code into ``channels`` per customer, -1 for no preference."""
    channels: Vocabulary
    outbound: dict[str, int]
    """Contacts per channel."""
    responses: dict[str, int]
    """Answered contacts per channel."""
    reached: dict[str, int]
    """Customers contacted at least once per channel."""
    responders: dict[str, int]
    """Customers who answered at least one contact per channel."""
    response_window_days: float

    def masks(self) -> dict[str, NDArray[np.bool_]]:
        """Channel name -> customers whose preferred channel it is (what segments' ``preferred_channel``
        and the "by preferred channel" breakdowns select)."""
        return {name: self.preferred == code for code, name in enumerate(self.channels.names)}

    def to_dict(self, suppressor: Suppressor) -> dict[str, Any]:
        sizes = np.bincount(
            self.preferred[self.preferred >= 0].astype(np.intp), minlength=len(self.channels.names)
        )
        rates = []
        for name in self.channels.names:
            reached, responders = self.reached[name], self.responders[name]
            outbound, responses = self.outbound[name], self.responses[name]
            hidden = suppressor.hides(reached) or suppressor.hides(responders)
            rates.append(
                {
                    "channel": name,
                    "outbound": None if hidden else outbound,
                    "responses": None if hidden else responses,
                    "rate": None if hidden or outbound == 0 else round(responses / outbound, 4),
                    "customers_reached": None if hidden else reached,
                    "suppressed": hidden,
                }
            )
        return {
            "definition": DEFINITION,
            "response_window_days": float(self.response_window_days),
            "preferred": [
                {"channel": name, **suppressor.cell(int(sizes[code]))}
                for code, name in enumerate(self.channels.names)
            ],
            "no_preference": suppressor.count(int((self.preferred < 0).sum())),
            "response_rates": rates,
        }


def channel_preference(dataset: Dataset) -> ChannelResult:
    frame = dataset.interactions
    model = dataset.model
    n = dataset.size
    channels = frame.channels
    n_channels = len(channels.names)
    window = round(model.response_window_days * SECONDS_PER_DAY)

    active = frame.kind_mask(model.active_kinds)
    contact = (frame.direction == OUTBOUND) & ~active
    action = (frame.direction == INBOUND) | active
    keys, span = _keys(dataset, window)

    contact_keys = np.sort(keys[contact])
    action_order = np.argsort(keys[action], kind="stable")
    action_keys = keys[action][action_order]
    action_rows = np.flatnonzero(action)[action_order]

    answered = _followed_within(contact_keys, action_keys, window)
    responding = _preceded_within(action_keys, contact_keys, window)
    responding |= active[action_rows] & (frame.direction[action_rows] == OUTBOUND)

    contact_cells = contact_keys // span
    answered_cells = contact_cells[answered]
    outbound = np.bincount(contact_cells % max(n_channels, 1), minlength=n_channels)
    responses = np.bincount(answered_cells % max(n_channels, 1), minlength=n_channels)
    reached = np.bincount(_distinct_sorted(contact_cells) % max(n_channels, 1), minlength=n_channels)
    responders = np.bincount(_distinct_sorted(answered_cells) % max(n_channels, 1), minlength=n_channels)

    preferred = _preferred(action_keys, responding, span, n, n_channels)
    names = channels.names
    return ChannelResult(
        preferred=preferred,
        channels=channels,
        outbound={name: int(outbound[c]) for c, name in enumerate(names)},
        responses={name: int(responses[c]) for c, name in enumerate(names)},
        reached={name: int(reached[c]) for c, name in enumerate(names)},
        responders={name: int(responders[c]) for c, name in enumerate(names)},
        response_window_days=model.response_window_days,
    )


def _keys(dataset: Dataset, window: int) -> tuple[NDArray[np.int64], int]:
    """``(customer * channels + channel) * span + second`` per row, with ``span`` wider than the history
    plus one window, so a window never reaches into the next (customer, channel) cell."""
    frame = dataset.interactions
    n_channels = max(len(frame.channels.names), 1)
    if len(frame) == 0:
        return np.zeros(0, dtype=np.int64), window + 1
    seconds = np.round((frame.day - frame.day.min()) * SECONDS_PER_DAY).astype(np.int64)
    span = int(seconds.max()) + window + 1
    if dataset.size * n_channels * span >= _MAX_KEY:
        raise ValueError("interaction history spans too long a period to key by the second")
    cell = frame.customer.astype(np.int64) * n_channels + frame.channel.astype(np.int64)
    return cell * span + seconds, span


def _followed_within(
    sources: NDArray[np.int64], targets: NDArray[np.int64], window: int
) -> NDArray[np.bool_]:
    """For each key in ``sources``: is there a key in sorted ``targets`` in ``[key, key + window]``?"""
    if targets.shape[0] == 0:
        return np.zeros(sources.shape[0], dtype=bool)
    nxt = np.searchsorted(targets, sources, side="left")
    within: NDArray[np.bool_] = (nxt < targets.shape[0]) & (
        targets[np.minimum(nxt, targets.shape[0] - 1)] <= sources + window
    )
    return within


def _preceded_within(
    sources: NDArray[np.int64], targets: NDArray[np.int64], window: int
) -> NDArray[np.bool_]:
    """For each key in ``sources``: is there a key in sorted ``targets`` in ``[key - window, key]``?"""
    if targets.shape[0] == 0:
        return np.zeros(sources.shape[0], dtype=bool)
    prev = np.searchsorted(targets, sources, side="right") - 1
    within: NDArray[np.bool_] = (prev >= 0) & (sources - targets[np.maximum(prev, 0)] <= window)
    return within


def _distinct_sorted(values: NDArray[np.int64]) -> NDArray[np.int64]:
    if values.shape[0] == 0:
        return values
    first = np.ones(values.shape[0], dtype=bool)
    first[1:] = values[1:] != values[:-1]
    return values[first]


def _preferred(
    action_keys: NDArray[np.int64], responding: NDArray[np.bool_], span: int, n: int, n_channels: int
) -> NDArray[np.int16]:
    preferred = np.full(n, -1, dtype=np.int16)
    if n_channels == 0 or action_keys.shape[0] == 0:
        return preferred
    cells = action_keys // span
    actions = np.bincount(cells, minlength=n * n_channels)
    answers = np.bincount(cells, weights=responding, minlength=n * n_channels)
    weight = (answers * (int(actions.max()) + 1) + actions).reshape(n, n_channels)
    # keys are sorted, so the last key of each cell is its most recent action
    last_of_cell = np.ones(cells.shape[0], dtype=bool)
    last_of_cell[:-1] = cells[1:] != cells[:-1]
    latest = np.full(n * n_channels, -1, dtype=np.int64)
    latest[cells[last_of_cell]] = action_keys[last_of_cell] % span
    latest_by_channel = latest.reshape(n, n_channels)
    best = weight.max(axis=1)
    candidates = weight == best[:, None]
    choice = np.where(candidates, latest_by_channel, -1).argmax(axis=1)
    acted = best > 0
    preferred[acted] = choice[acted].astype(np.int16)
    return preferred
