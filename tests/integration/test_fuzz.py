"""Fuzz every HTTP entry point with mutated and random bodies: a 4xx with a reason, never a 5xx."""

from __future__ import annotations

import random

import orjson

from gateway.app import create_app

SEED = 20261122
VALID = {
    "/v1/chat/completions": orjson.dumps({"model": "scout", "stream": False, "messages": [
        {"role": "user", "content": "Which SUV would you recommend?"}]}),
    "/api/chat": orjson.dumps({"message": "Which SUV would you recommend?", "id": "m1"}),
    "/api/chat/answer": orjson.dumps({"session": "x" * 24 + "." + "y" * 16, "id": "m1"}),
    "/api/ws-token": b"{}",
}
NASTY = [b"\x00", b"\xff\xfe", b"\\ud800", b"\xed\xa0\x80", b"[" * 3000, b"{" * 3000, b'"',
         b"1e999999", b"-0", b"null", b"\xe2\x80\xae", b"\r\nX-Injected: 1", b"%00",
         "\u202e".encode(), b"\t" * 100]


def mutate(rng: random.Random, body: bytes) -> bytes:
    data = bytearray(body)
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(5)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and data:
            del data[pos % len(data)]
        elif op == 1:
            data[pos:pos] = rng.choice(NASTY)
        elif op == 2 and data:
            data[pos % len(data)] = rng.randrange(256)
        elif op == 3:
            data[pos:] = b""
        else:
            data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 20)))
    return bytes(data)


async def test_mutated_and_random_bodies_never_get_a_5xx(gw_client, settings, capsys):
    client = await gw_client(create_app(settings))
    rng = random.Random(SEED)
    cases = 0
    statuses: dict[int, int] = {}
    for path, valid in VALID.items():
        for i in range(150):
            body = mutate(rng, valid) if i % 5 else bytes(rng.randrange(256)
                                                         for _ in range(rng.randint(0, 200)))
            resp = await client.post(path, data=body,
                                     headers={"Content-Type": "application/json"})
            text = await resp.read()
            statuses[resp.status] = statuses.get(resp.status, 0) + 1
            assert resp.status < 500, (path, body[:200], text[:300])
            if resp.status >= 400:
                err = orjson.loads(text)["error"]
                assert err["message"] and "Traceback" not in err["message"]
            cases += 1
    # ... and everyone else is still served.
    ok = await client.post("/v1/chat/completions", data=VALID["/v1/chat/completions"],
                           headers={"Content-Type": "application/json"})
    assert ok.status == 200
    with capsys.disabled():
        print(f"\nHTTP fuzz: {cases} cases over {len(VALID)} entry points, statuses {statuses}")
