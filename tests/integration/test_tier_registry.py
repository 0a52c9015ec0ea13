"""A tier added through the registry alone: config, routing, race, health, privacy, metrics
and the dashboard take it with no other module edited. If any of them named the tiers
itself, the turn below would not reach the new tier, or its section would be refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest

from gateway.app import create_app
from gateway.providers import (
    HEADERS,
    Delta,
    ProbeTarget,
    StreamEvent,
    Targets,
    TierConfig,
    TierContext,
    TierRequest,
    TierSpec,
    Usage,
    Verdict,
)
from gateway.tiers import registry
from tests.conftest import STAFF, make_settings

PERSONAL = "Which hybrid SUV would you recommend? Call me at (512) 555-0143."
PRIVATE = "My credit score is 640 and I make $85,000 a year, can I finance the Tacoma?"


class EchoConfig(TierConfig):
    section: ClassVar[str] = "echo"
    model: str = "echo-1"
    loud: bool = False   # a setting of its own, read from its section


class EchoProvider:
    """Answers with what it was sent, and keeps it: the test sees what left."""

    tier = "echo"

    def __init__(self, cfg: EchoConfig) -> None:
        self.model = cfg.model
        self.loud = cfg.loud
        self.seen: list[list[dict[str, Any]]] = []

    async def stream(self, request: TierRequest) -> AsyncIterator[StreamEvent]:
        messages = request.upstream_messages()
        self.seen.append(messages)
        text = f"echo: {messages[-1]['content']}"
        yield HEADERS
        yield Delta(text.upper() if self.loud else text, self.model, None, "stop")
        yield Usage(3, 4)

    async def close(self) -> None:
        pass


SEEN: list[EchoProvider] = []


def _provider(ctx: TierContext) -> EchoProvider:
    cfg = ctx.settings.tiers["echo"]
    assert isinstance(cfg, EchoConfig)
    SEEN.append(EchoProvider(cfg))
    return SEEN[-1]


async def _probe(session: Any, key: str | None, health: Any) -> Verdict:
    return Verdict("up", "echo answers")


def echo_spec(offsite: bool) -> TierSpec:
    return TierSpec(name="echo", label="Echo", color="#123456", generative=True,
                    offsite=offsite, config=EchoConfig, provider=_provider,
                    targets=lambda cfg: Targets((ProbeTarget("echo", "api", _probe),)))


def first_in_ladders(data: dict[str, Any]) -> None:
    data["echo"] = {"model": "echo-1", "loud": False}
    data["prices"]["echo-1"] = {"input": 1.0, "output": 2.0}
    for intent in data["intents"].values():
        if not intent.get("private") and intent.get("offsite") != "never":
            intent["ladder"] = ["echo", *intent["ladder"]]


@pytest.fixture
def added(request):
    SEEN.clear()
    with registry().added(echo_spec(offsite=request.param), before="openai"):
        yield request.param


@pytest.mark.parametrize("added", [False], indirect=True)
async def test_a_turn_runs_through_a_tier_added_by_the_registry_alone(
        added, gw_client, onprem_sim):
    settings = make_settings([onprem_sim.url], None, mutate=first_in_ladders)
    assert "echo" in settings.enabled_tiers() and isinstance(settings.tiers["echo"], EchoConfig)
    client = await gw_client(create_app(settings))
    r = await client.post("/v1/chat/completions", json={
        "model": "scout", "messages": [{"role": "user", "content": "recommend an SUV"}]})
    body = await r.json()
    assert r.status == 200, body
    assert body["served_by"] == ["echo"] and body["model"] == "echo-1"
    assert body["choices"][0]["message"]["content"] == "echo: recommend an SUV"
    assert body["usage"]["completion_tokens"] == 4
    models = {m["id"] for m in (await (await client.get("/v1/models")).json())["data"]}
    assert "scout/echo" in models
    pinned = await client.post("/v1/chat/completions", json={
        "model": "scout/echo", "messages": [{"role": "user", "content": "hello there"}]})
    assert (await pinned.json())["served_by"] == ["echo"]
    health = await (await client.get("/health", headers=STAFF)).json()
    assert health["tiers"]["echo"]["state"] in ("up", "unknown")
    metrics = await (await client.get("/metrics", headers=STAFF)).text()
    assert 'tier="echo"' in metrics
    page = await (await client.get("/dashboard/data", headers=STAFF)).json()
    assert {"name": "echo", "label": "Echo", "color": "#123456"} in page["tier_meta"]["series"]


def test_its_section_is_validated_like_any_other():
    from gateway.config import ConfigError, settings_from_dict
    from tests.conftest import example_config
    env = {"ONPREM_API_KEY": "a", "OPENAI_API_KEY": "b", "SCOUT_API_KEYS": "w:k"}
    with registry().added(echo_spec(offsite=False)):
        data = example_config()
        first_in_ladders(data)
        data["echo"]["lowd"] = True
        data["echo"]["loud"] = "false"
        with pytest.raises(ConfigError) as exc:
            settings_from_dict(data, env)
        assert "echo.lowd: unknown setting (did you mean 'loud'?)" in exc.value.problems
    with pytest.raises(ConfigError) as gone:   # removed again: the section is unknown
        settings_from_dict(data, env)
    assert any(p.startswith("echo: unknown section") for p in gone.value.problems)


@pytest.mark.parametrize("added", [True], indirect=True)
async def test_an_offsite_tier_gets_privacy_by_construction(added, gw_client, onprem_sim):
    await onprem_sim.set_fault("http_500")
    client = await gw_client(create_app(make_settings([onprem_sim.url], None,
                                                      mutate=first_in_ladders)))
    r = await client.post("/v1/chat/completions", json={
        "model": "scout", "messages": [{"role": "user", "content": PERSONAL}]})
    body = await r.json()
    assert body["served_by"] == ["echo"]
    sent = SEEN[-1].seen[-1][-1]["content"]
    assert "555-0143" not in sent and "[PHONE_1]" in sent
    # the customer sees their own number again: restored on the way back
    assert "(512) 555-0143" in body["choices"][0]["message"]["content"]
    before = len(SEEN[-1].seen)
    r = await client.post("/v1/chat/completions", json={"model": "scout", "messages": [
        {"role": "user", "content": PRIVATE},
        {"role": "assistant", "content": "Our finance team can help."},
        {"role": "user", "content": "Which trims come in blue?"}]})
    assert (await r.json())["served_by"] == ["inventory"]
    assert len(SEEN[-1].seen) == before, "a private conversation never reached the tier"
