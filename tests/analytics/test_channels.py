"""Channel preference and response rates on handcrafted contact histories."""

from __future__ import annotations

import json

from cdp.analytics.channels import channel_preference
from cdp.analytics.frame import Dataset
from cdp.analytics.privacy import Suppressor
from tests.analytics.synthetic import Event, build

PHONE_ANSWERERS = [
    Event(30, "call", "phone", "outbound"),
    Event(28, "call", "phone", "inbound"),  # answers within the window
    Event(20, "newsletter", "email", "outbound"),
    Event(10, "newsletter", "email", "outbound"),  # emails ignored
]
EMAIL_CLICKERS = [
    Event(30, "newsletter", "email", "outbound"),
    Event(29, "newsletter_click", "email", "outbound"),  # recorded by the sender, yet the customer acting
    Event(15, "question", "email", "inbound"),  # not after a contact: an action, not an answer
    Event(20, "call", "phone", "outbound"),
]
LATE_PHONE = [
    Event(40, "letter", "letter", "outbound"),
    Event(30, "call", "phone", "outbound"),
    Event(20, "call", "phone", "inbound"),  # ten days later: outside the 7-day window
]
LETTER_WRITER = [*LATE_PHONE, Event(38, "reply", "letter", "inbound")]
SILENT = [Event(25, "newsletter", "email", "outbound")]
WEB_VISITORS = [Event(5, "visit", "web", "inbound")]


def planted() -> Dataset:
    return build(
        [PHONE_ANSWERERS] * 5
        + [EMAIL_CLICKERS] * 5
        + [LATE_PHONE, LETTER_WRITER]
        + [SILENT] * 5
        + [WEB_VISITORS] * 5
    )


def test_customers_who_answer_calls_and_ignore_emails_prefer_phone() -> None:
    result = channel_preference(planted())
    preferred = [result.channels.names[c] if c >= 0 else None for c in result.preferred]
    assert preferred == (["phone"] * 5 + ["email"] * 5 + ["phone", "letter"] + [None] * 5 + ["web"] * 5)


def test_response_counts_are_exact() -> None:
    result = channel_preference(planted())
    assert result.channels.names == ("email", "letter", "phone", "web")
    assert result.outbound == {"email": 20, "letter": 2, "phone": 12, "web": 0}
    assert result.responses == {"email": 5, "letter": 1, "phone": 5, "web": 0}
    assert result.reached == {"email": 15, "letter": 2, "phone": 12, "web": 0}
    assert result.responders == {"email": 5, "letter": 1, "phone": 5, "web": 0}


def test_to_dict_shows_rates_and_suppresses_the_group_of_two() -> None:
    out = channel_preference(planted()).to_dict(Suppressor(5, 22))
    json.dumps(out, allow_nan=False)
    assert out["response_window_days"] == 7.0
    assert out["preferred"] == [
        {"channel": "email", "customers": 5, "suppressed": False},
        {"channel": "letter", "customers": None, "suppressed": True},
        {"channel": "phone", "customers": 6, "suppressed": False},
        {"channel": "web", "customers": 5, "suppressed": False},
    ]
    assert out["no_preference"] == 5
    assert out["response_rates"] == [
        {
            "channel": "email",
            "outbound": 20,
            "responses": 5,
            "rate": 0.25,
            "customers_reached": 15,
            "suppressed": False,
        },
        {
            "channel": "letter",
            "outbound": None,
            "responses": None,
            "rate": None,
            "customers_reached": None,
            "suppressed": True,
        },
        {
            "channel": "phone",
            "outbound": 12,
            "responses": 5,
            "rate": 0.4167,
            "customers_reached": 12,
            "suppressed": False,
        },
        {
            "channel": "web",
            "outbound": 0,
            "responses": 0,
            "rate": None,
            "customers_reached": 0,
            "suppressed": False,
        },
    ]


def test_a_rate_is_suppressed_when_few_of_many_reached_answered() -> None:
    answered = [Event(30, "call", "phone", "outbound"), Event(29, "call", "phone", "inbound")]
    ignored = [Event(30, "call", "phone", "outbound")]
    out = channel_preference(build([answered] * 2 + [ignored] * 8 + [WEB_VISITORS] * 5)).to_dict(
        Suppressor(5, 15)
    )
    phone = next(row for row in out["response_rates"] if row["channel"] == "phone")
    assert phone["suppressed"] is True and phone["rate"] is None


def test_a_contact_counts_once_however_many_answers_follow() -> None:
    history = [
        Event(10, "newsletter", "email", "outbound"),
        Event(9, "reply", "email", "inbound"),
        Event(8, "reply", "email", "inbound"),
    ]
    result = channel_preference(build([history]))
    assert result.outbound["email"] == 1
    assert result.responses["email"] == 1


def test_the_window_is_inclusive_at_seven_days() -> None:
    on_edge = [Event(20, "call", "phone", "outbound"), Event(13, "call", "phone", "inbound")]
    past_edge = [Event(20, "call", "phone", "outbound"), Event(12.5, "call", "phone", "inbound")]
    before = [Event(20, "call", "phone", "inbound"), Event(19, "call", "phone", "outbound")]
    result = channel_preference(build([on_edge, past_edge, before]))
    assert result.outbound["phone"] == 3
    assert result.responses["phone"] == 1
    assert result.responders["phone"] == 1


def test_an_answer_outweighs_one_unprompted_action_and_ties_go_to_the_most_recent() -> None:
    answer_beats_visit = [
        Event(30, "call", "phone", "outbound"),
        Event(29, "call", "phone", "inbound"),
        Event(2, "visit", "web", "inbound"),
    ]
    tie_recent_web = [Event(10, "question", "email", "inbound"), Event(5, "visit", "web", "inbound")]
    tie_recent_email = [Event(5, "question", "email", "inbound"), Event(10, "visit", "web", "inbound")]
    result = channel_preference(build([answer_beats_visit, tie_recent_web, tie_recent_email]))
    assert [result.channels.names[c] for c in result.preferred] == ["phone", "web", "email"]


def test_masks_name_each_channel() -> None:
    masks = channel_preference(planted()).masks()
    assert set(masks) == {"email", "letter", "phone", "web"}
    assert int(masks["phone"].sum()) == 6
    assert masks["web"][17:].all() and not masks["web"][:17].any()


def test_no_interactions_means_no_preference() -> None:
    result = channel_preference(build([[], []]))
    assert result.preferred.tolist() == [-1, -1]
    out = result.to_dict(Suppressor(5, 2))
    json.dumps(out, allow_nan=False)
    assert out["no_preference"] is None
