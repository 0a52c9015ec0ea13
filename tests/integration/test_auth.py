"""Every chat endpoint needs an API key; browsers get short-lived WebSocket tokens."""

from __future__ import annotations

import pytest

from gateway.app import create_app
from tests.conftest import API_KEY, make_settings

CHAT = {"model": "scout", "messages": [{"role": "user", "content": "hello"}]}


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/v1/chat/completions", CHAT), ("GET", "/v1/models", None),
    ("POST", "/api/chat", {"message": "hello"}), ("POST", "/api/ws-token", {}),
    ("POST", "/api/chat/answer", {}),
])
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-key-0123456789"},
                                     {"Authorization": "Basic Zm9vOmJhcg=="},
                                     {"X-API-Key": "nope"}])
async def test_no_valid_key_is_a_401_in_openai_shape(aiohttp_client, settings, method, path, body,
                                                     headers):
    client = await aiohttp_client(create_app(settings))
    resp = await client.request(method, path, json=body, headers=headers)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    err = (await resp.json())["error"]
    assert err["type"] == "invalid_request_error" and err["code"] == "invalid_api_key"
    assert "wrong-key" not in err["message"]


async def test_the_key_works_as_bearer_or_x_api_key(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings))
    for headers in ({"Authorization": f"Bearer {API_KEY}"}, {"X-API-Key": API_KEY}):
        assert (await client.get("/v1/models", headers=headers)).status == 200


async def test_health_is_public(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings))
    assert (await client.get("/health")).status == 200


async def test_rotation_with_overlap_through_the_key_file(aiohttp_client, onprem_sim, openai_sim,
                                                          tmp_path):
    import os
    f = tmp_path / "api-keys"
    f.write_text("old old-frontend-key-0123\n")

    def use_file(data):
        data["auth"]["api_keys_file"] = str(f)

    settings = make_settings([onprem_sim.url], None, mutate=use_file)
    app = create_app(settings)
    client = await aiohttp_client(app)

    async def status(key):
        return (await client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})).status

    assert await status("old-frontend-key-0123") == 200
    f.write_text("old old-frontend-key-0123\nnew new-frontend-key-0123\n")
    os.utime(f, (1, 1))
    from gateway.appkeys import API_KEYS
    app[API_KEYS].reload_if_changed()  # what the 2 s file watch and SIGHUP do
    assert await status("old-frontend-key-0123") == 200
    assert await status("new-frontend-key-0123") == 200
    f.write_text("new new-frontend-key-0123\n")
    os.utime(f, (2, 2))
    app[API_KEYS].reload_if_changed()
    assert await status("old-frontend-key-0123") == 401
    assert await status("new-frontend-key-0123") == 200


async def test_ws_token_for_a_key_and_demo_tokens_off_by_default(gw_client, settings):
    client = await gw_client(create_app(settings))
    data = await (await client.post("/api/ws-token")).json()
    assert data["expires_in"] == 60 and data["subprotocols"] == ["scout.v1", f"bearer.{data['token']}"]
    resp = await client.get("/api/demo-token")
    assert resp.status == 404


def _with_origin(onprem_sim, openai_sim):
    def mutate(data):
        data["auth"]["allowed_origins"] = ["https://scout.example"]
    return make_settings([onprem_sim.url], f"{openai_sim.url}/v1", mutate=mutate)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses", "/api/chat",
                                  "/api/chat/answer"])
async def test_cors_preflight_only_for_the_configured_origin(aiohttp_client, onprem_sim, openai_sim,
                                                             path):
    client = await aiohttp_client(create_app(_with_origin(onprem_sim, openai_sim)))
    ask = {"Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "authorization, content-type"}
    ok = await client.options(path, headers={"Origin": "https://scout.example", **ask})
    assert ok.status == 200
    assert ok.headers["Access-Control-Allow-Origin"] == "https://scout.example"
    assert "AUTHORIZATION" in ok.headers["Access-Control-Allow-Headers"].upper()
    assert "Access-Control-Allow-Credentials" not in ok.headers
    bad = await client.options(path, headers={"Origin": "https://evil.example", **ask})
    assert bad.status == 403
    assert "Access-Control-Allow-Origin" not in bad.headers
    assert "evil.example" in (await bad.json())["error"]["message"]


async def test_cors_headers_on_real_responses_for_the_allowed_origin_only(aiohttp_client, onprem_sim,
                                                                          openai_sim):
    client = await aiohttp_client(create_app(_with_origin(onprem_sim, openai_sim)))
    key = {"Authorization": f"Bearer {API_KEY}"}
    ok = await client.post("/v1/chat/completions", json=CHAT,
                           headers={**key, "Origin": "https://scout.example"})
    assert ok.status == 200
    assert ok.headers["Access-Control-Allow-Origin"] == "https://scout.example"
    assert "X-SCOUT-TURN" in ok.headers["Access-Control-Expose-Headers"].upper()
    # A refusal carries the header too, so the page can read why it was refused.
    refused = await client.post("/v1/chat/completions", json=CHAT,
                                headers={"Origin": "https://scout.example"})
    assert refused.status == 401
    assert refused.headers["Access-Control-Allow-Origin"] == "https://scout.example"
    other = await client.post("/v1/chat/completions", json=CHAT,
                              headers={**key, "Origin": "https://evil.example"})
    assert other.status == 200 and "Access-Control-Allow-Origin" not in other.headers
    health = await client.get("/health", headers={"Origin": "https://scout.example"})
    assert "Access-Control-Allow-Origin" not in health.headers
