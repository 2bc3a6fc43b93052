"""The signed segment paths and live requests between hosts: a fresh signature holds; an expired one, one
signed too far ahead, or one for something else does not, and the answer says why."""

from __future__ import annotations

import os
from urllib.parse import parse_qs, urlsplit

from pipeline.live.protocol import AUTH_TTL_S, check_request, sign_request
from pipeline.record.serve import SIGN_TTL_S, check_signature, expiry_problem, signed_path

KEY = os.urandom(32)
NOW = 1_700_000_000.0


def test_expiry_problem_says_expired_or_too_far_ahead() -> None:
    assert expiry_problem(int(NOW) + 10, 30, NOW) is None
    assert expiry_problem(int(NOW) - 1, 30, NOW) == "expired"
    assert expiry_problem(int(NOW) + 30 + 61, 30, NOW) == "expiry too far ahead"
    assert expiry_problem(int(NOW) + 30 + 59, 30, NOW) is None  # clock skew between hosts


def test_a_signed_segment_path_holds_until_it_expires() -> None:
    q = parse_qs(urlsplit(signed_path(KEY, "cam1", "seg.mp4", now=NOW)).query)
    exp, sig = q["exp"][0], q["sig"][0]
    assert check_signature(KEY, "cam1", "seg.mp4", exp, sig, now=NOW) is None
    assert check_signature(KEY, "cam1", "other.mp4", exp, sig, now=NOW) == "bad signature"
    assert check_signature(KEY, "cam1", "seg.mp4", exp, sig, now=NOW + SIGN_TTL_S + 1) == "expired"
    assert check_signature(KEY, "cam1", "seg.mp4", "soon", sig, now=NOW) == "bad expiry"


def test_a_signed_live_request_holds_until_it_expires() -> None:
    auth = sign_request(KEY, "wa", "watch", "cam1", now=NOW)
    assert check_request(KEY, "wa", "watch", "cam1", auth, now=NOW) is None
    assert check_request(KEY, "wa", "watch", "cam1", auth, now=NOW + AUTH_TTL_S + 1) == "expired"
    assert check_request(KEY, "wa", "watch", "cam1", auth, now=NOW - 120) == "expiry too far ahead"
