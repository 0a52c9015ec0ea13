"""API keys and WebSocket tokens: pure checks."""

from __future__ import annotations

import hashlib
import os

import pytest

from gateway.security.api_keys import ApiKeys, parse_env, parse_file
from gateway.security.tokens import TokenSigner


def test_several_keys_each_with_a_label():
    keys = ApiKeys("vercel:key-one-0123456789,mobile:key-two-0123456789")
    assert keys.check("key-one-0123456789") == "vercel"
    assert keys.check("key-two-0123456789") == "mobile"
    for bad in (None, "", "key-one-012345678", "KEY-ONE-0123456789", "x" * 10_000):
        assert keys.check(bad) is None


def test_file_keys_plain_or_hashed_and_problems_named():
    h = hashlib.sha256(b"hashed-key-0123456789").hexdigest()
    keys, problems = parse_file(f"# staff\nweb plain-key-0123456789\nold sha256:{h}\n"
                                "bad\nshort abc\nbroken sha256:zz\n")
    assert set(keys) == {"web", "old"}
    assert [p.split(":")[0] for p in problems] == ["line 4", "line 5", "line 6"]
    _, problems = parse_env("nolabel,ok:0123456789abcdef,short:abc")
    assert len(problems) == 2


def test_rotation_through_the_file_without_restart(tmp_path):
    f = tmp_path / "keys"
    f.write_text("old old-key-0123456789\n")
    keys = ApiKeys(file=str(f))
    assert keys.check("old-key-0123456789") == "old"
    f.write_text("old old-key-0123456789\nnew new-key-0123456789\n")  # overlap: both valid
    os.utime(f, (1, 1))
    keys.reload_if_changed()
    assert keys.check("old-key-0123456789") == "old" and keys.check("new-key-0123456789") == "new"
    f.write_text("new new-key-0123456789\n")  # the old one removed
    os.utime(f, (2, 2))
    keys.reload_if_changed()
    assert keys.check("old-key-0123456789") is None and keys.check("new-key-0123456789") == "new"
    f.unlink()  # a vanished file keeps the keys we had rather than locking everyone out
    keys.reload()
    assert keys.check("new-key-0123456789") == "new"


def test_tokens_carry_the_label_and_expire():
    signer = TokenSigner(b"s" * 32)
    token = signer.issue("vercel", 60, now=1000)
    assert signer.verify(token, now=1059) == "vercel"
    assert signer.verify(token, now=1061) is None
    assert TokenSigner(b"t" * 32).verify(token, now=1000) is None


@pytest.mark.parametrize("bad", ["", "a.b", "a.b.c", "x" * 1000, "eyJsIjoiYSIsImUiOjk5OTk5OTk5OTl9.",
                                 "!!.??"])
def test_malformed_tokens_are_refused(bad):
    assert TokenSigner(b"s" * 32).verify(bad) is None


def test_a_tampered_token_is_refused():
    signer = TokenSigner(b"s" * 32)
    body, sig = signer.issue("vercel", 60).split(".")
    forged = TokenSigner(b"s" * 32).issue("admin", 60).split(".")[0]
    assert signer.verify(f"{forged}.{sig}") is None
    flipped = sig[:-1] + ("B" if sig[-1] == "A" else "A")
    assert signer.verify(f"{body}.{flipped}") is None
