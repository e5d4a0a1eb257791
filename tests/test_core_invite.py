"""Invite tokens: encode/decode round trip, and every damaged or hostile token is an InviteError."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.core.invite import Invite, decode_invite, encode_invite
from shoal.errors import InviteError

GOOD = Invite(hosts=("192.168.1.20", "laptop.lan"), port=7400, dbname="shoal", role="shoal_dev_0123456789abcdef",
              password="A" * 32, hub_id="0b0e2f7e-3f5e-4b8e-9c1e-1d2f3a4b5c6d", ca_fingerprint="ab" * 32,
              folders=("photos", "notes"), expires=2_000_000_000)


def _token(**change) -> str:
    body = {"h": list(GOOD.hosts), "p": GOOD.port, "d": GOOD.dbname, "u": GOOD.role, "w": GOOD.password,
            "i": GOOD.hub_id, "f": GOOD.ca_fingerprint, "s": list(GOOD.folders), "e": GOOD.expires,
            "m": "verify-ca"}
    body.update(change)
    return "shoal1." + base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")


def test_round_trip():
    assert decode_invite(encode_invite(GOOD)) == GOOD
    assert decode_invite("  " + encode_invite(GOOD) + "\n") == GOOD
    no_ca = Invite(**{**GOOD.__dict__, "ca_fingerprint": None, "sslmode": "verify-full"})
    assert decode_invite(encode_invite(no_ca)) == no_ca
    sealed = Invite(**{**GOOD.__dict__, "encrypted": ("photos",)})
    assert decode_invite(encode_invite(sealed)) == sealed
    assert decode_invite(_token()).encrypted == ()  # an invite from before encrypted folders


@pytest.mark.parametrize("now,expired", [(1_999_999_999, False), (2_000_000_000, True), (2_100_000_000, True)])
def test_expiry(now, expired):
    assert GOOD.expired(now) is expired


@pytest.mark.parametrize("change", [
    {"h": []}, {"h": ["a b"]}, {"h": ["host/../x"]}, {"h": ["x;rm -rf"]}, {"h": "laptop"},
    {"p": 0}, {"p": 70000}, {"p": "7400"}, {"p": True},
    {"d": "shoal db"}, {"d": ""}, {"u": "Robert'); DROP"}, {"u": "x" * 64}, {"w": "short"}, {"w": "has space" * 3},
    {"i": "not-a-uuid"}, {"f": "AB" * 32}, {"f": "ab" * 31}, {"s": ["../etc"]}, {"s": "photos"},
    {"e": -1}, {"e": "tomorrow"}, {"m": "disable"}, {"m": "prefer"},
    {"x": "photos"}, {"x": ["music"]}, {"x": [1]}, {"x": None},
])
def test_damaged_fields_are_refused(change):
    with pytest.raises(InviteError):
        decode_invite(_token(**change))


@pytest.mark.parametrize("token", ["", "shoal join x", "shoal1.", "shoal1.!!!!", "shoal1." + "A" * 5000,
                                   "shoal1." + base64.urlsafe_b64encode(b"[1,2]").decode(),
                                   "shoal2." + _token()[7:]])
def test_not_a_token(token):
    with pytest.raises(InviteError):
        decode_invite(token)


def test_encode_refuses_what_decode_would():
    with pytest.raises(InviteError):
        encode_invite(Invite(**{**GOOD.__dict__, "role": "Bad Role"}))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_an_invite_or_an_invite_error(text):
    for candidate in (text, "shoal1." + text):
        try:
            decode_invite(candidate)
        except InviteError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from("hpduwifsem"), st.none() | st.booleans() | st.integers() | st.text(max_size=20)
                       | st.lists(st.text(max_size=10), max_size=3)))
def test_any_json_object_is_an_invite_or_an_invite_error(body):
    token = "shoal1." + base64.urlsafe_b64encode(json.dumps(body).encode()).decode()
    try:
        decode_invite(token)
    except InviteError:
        pass
