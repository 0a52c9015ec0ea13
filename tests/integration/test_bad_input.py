"""Bad input gets a 4xx in OpenAI's error shape naming the problem; never a 500."""

from __future__ import annotations

import orjson
import pytest

from gateway.app import create_app

OK_MSG = [{"role": "user", "content": "hello"}]
CASES = [
    # (path, raw body, status, words the error must contain)
    ("/v1/chat/completions", b"{bad json", 400, "not valid JSON"),
    ("/v1/chat/completions", b"", 400, "empty"),
    ("/v1/chat/completions", b"[1, 2]", 400, "JSON object"),
    ("/v1/chat/completions", b'{"messages": []}', 400, "model is required"),
    ("/v1/chat/completions", orjson.dumps({"model": "scout"}), 400, "messages"),
    ("/v1/chat/completions", orjson.dumps({"model": "scout", "messages": []}), 400, "non-empty"),
    ("/v1/chat/completions", orjson.dumps({"model": "scout", "messages": "hi"}), 400, "array"),
    ("/v1/chat/completions", orjson.dumps({"model": "scout", "messages": [1]}), 400, "object"),
    ("/v1/chat/completions", orjson.dumps(
        {"model": "scout", "messages": [{"role": "wizard", "content": "x"}]}), 400, "role"),
    ("/v1/chat/completions", orjson.dumps(
        {"model": "scout", "messages": [{"role": "user", "content": 42}]}), 400, "content"),
    # Found by schemathesis: an unhashable role was a 500.
    ("/v1/chat/completions", orjson.dumps(
        {"model": "scout", "messages": [{"role": {}, "content": "x"}]}), 400, "role"),
    ("/v1/chat/completions", orjson.dumps(
        {"model": "scout", "messages": [{"role": "user", "content": "x", "name": 5}]}), 400,
     "name must be a string"),
    ("/v1/chat/completions", orjson.dumps({"model": "scout", "messages": OK_MSG, "n": True}), 400,
     "n=1"),
    ("/v1/chat/completions", orjson.dumps({"model": "scout", "messages": OK_MSG, "stream": True,
                                           "stream_options": {"include_usage": "yes"}}), 400,
     "include_usage"),
    ("/v1/chat/completions", orjson.dumps({"model": "scout", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://x"}}]}]}), 400, "text parts"),
    ("/v1/chat/completions", orjson.dumps(
        {"model": "scout", "messages": [{"role": "user", "content": "   "}]}), 400, "empty user"),
    ("/v1/chat/completions", orjson.dumps(
        {"model": "scout", "messages": [{"role": "system", "content": "x"}]}), 400, "no user"),
    ("/v1/chat/completions", orjson.dumps(
        {"model": "scout", "messages": [{"role": "user", "content": "x" * 40_000}]}), 413,
     "limit per message"),
    ("/v1/chat/completions", orjson.dumps({"model": "scout", "messages": [
        {"role": "user", "content": "x" * 30_000}] * 10}), 413, "limit is 262144"),
    ("/v1/chat/completions", orjson.dumps(
        {"model": "scout", "messages": OK_MSG, "stream": "yes"}), 400, "stream"),
    ("/v1/chat/completions", orjson.dumps(
        {"model": "scout", "messages": OK_MSG, "temperature": 9}), 400, "temperature"),
    ("/v1/chat/completions", orjson.dumps(
        {"model": "scout", "messages": OK_MSG, "max_tokens": "many"}), 400, "max_tokens"),
    ("/v1/chat/completions", orjson.dumps({"model": "scout", "messages": OK_MSG, "n": 3}), 400,
     "n=1"),
    ("/v1/chat/completions", orjson.dumps({"model": "scout", "messages": OK_MSG, "tools": "x"}),
     400, "tools"),
    ("/v1/chat/completions", b'{"model": "scout", "messages": [{"role": "user", "content": "\xff"}]}',
     400, "not valid JSON"),
    ("/v1/chat/completions", b'{"model": "scout", "messages": [{"role": "user", '
                             b'"content": "\\ud800"}]}', 400, "not valid JSON"),
    ("/v1/chat/completions", b"[" * 5000 + b"]" * 5000, 400, "JSON"),
    ("/v1/chat/completions", orjson.dumps({"model": "nope", "messages": OK_MSG}), 404, "nope"),
    ("/api/chat", b"{}", 400, "message must be a string"),
    ("/api/chat", orjson.dumps({"message": "hi", "id": "../../etc"}), 400, "id must be"),
    ("/api/chat", orjson.dumps({"message": "hi", "history": "x"}), 400, "history"),
    ("/api/chat", orjson.dumps({"message": "hi", "history": False}), 400, "history"),
    ("/api/chat", orjson.dumps({"message": ""}), 400, "empty user"),
]


@pytest.mark.parametrize(("path", "body", "status", "words"), CASES,
                         ids=[f"{i}-{c[2]}" for i, c in enumerate(CASES)])
async def test_bad_input_is_a_4xx_naming_the_problem(gw_client, settings, path, body,
                                                     status, words):
    client = await gw_client(create_app(settings))
    resp = await client.post(path, data=body, headers={"Content-Type": "application/json"})
    assert resp.status == status
    err = (await resp.json())["error"]
    assert words in err["message"], err
    assert set(err) == {"message", "type", "param", "code"}
    # ... and the server keeps serving everyone else.
    ok = await client.post("/v1/chat/completions", json={"model": "scout", "messages": OK_MSG})
    assert ok.status == 200


async def test_wrong_method_and_unknown_path(gw_client, settings):
    client = await gw_client(create_app(settings))
    r = await client.get("/v1/chat/completions")
    assert r.status == 405 and "GET is not allowed" in (await r.json())["error"]["message"]
    assert set(r.headers["Allow"].split(",")) == {"POST", "OPTIONS"}  # OPTIONS: CORS preflight
    r = await client.get("/v2/anything")
    assert r.status == 404 and (await r.json())["error"]["type"] == "invalid_request_error"
    # Nothing is there to protect: an unknown path is a 404 with or without a key, not a 401.
    r = await client.get("/favicon.ico", headers={"Authorization": "Bearer nope"})
    assert r.status == 404 and "no route for GET /favicon.ico" in (await r.json())["error"]["message"]
