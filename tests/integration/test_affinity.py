"""Conversation-aware replicas: a conversation's turns reach the replica holding its history.

Three replica simulators, each answering in its own words, so an answer says who gave it.
Affinity is rendezvous hashing on the conversation with a load bound; the homes the bound
chose are shared through Redis, so two gateway processes, and a restarted one, agree; an
ejected replica's conversations move to their next replica and come back; and the prompt
keeps its prefix from one turn to the next.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import sys
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from bench import procs
from gateway.app import create_app
from gateway.chat import conversation_key
from gateway.config import IntentConfig, Replica
from gateway.providers.base import GROUNDING_HEADER, HELD_STOCK, Delta, TierRequest
from gateway.providers.homes import Homes, SharedHomes, rendezvous
from gateway.providers.onprem import OnpremConfig, OnpremProvider
from gateway.state.kv import MemoryKV
from tests.conftest import API_KEY, AUTH, STAFF, make_settings, running
from tests.netns import Namespace, netns_or_skip

NAMES = ("r1", "r2", "r3")
INTENT = IntentConfig(name="t", ladder=("onprem",), static_reply="static")


@contextlib.asynccontextmanager
async def three(**knobs: Any):
    async with running(answer="from r1", **knobs) as a, running(answer="from r2", **knobs) as b, \
            running(answer="from r3", **knobs) as c:
        yield [a, b, c]


def no_cache(data: dict[str, Any]) -> None:
    """Every turn to a replica: a cached answer would say nothing about where turns go."""
    for intent in data["intents"].values():
        intent["cacheable"] = False


def settings_for(sims, **mutations):
    def mutate(data):
        no_cache(data)
        data["onprem"]["replicas"] = [{"name": n, "url": s.url} for n, s in zip(NAMES, sims,
                                                                                strict=True)]
        data["onprem"].update(mutations)
    return make_settings([s.url for s in sims], None, mutate=mutate)


def who(answer: str) -> str:
    return answer.rsplit(" ", 1)[-1]


async def converse(post, n_turns: int, first: str) -> list[str]:
    """One conversation over the OpenAI API (the client resends its history each turn);
    `post(turn, body)` sends turn `turn`. The replicas that answered, in turn order."""
    messages: list[dict[str, str]] = []
    answered = []
    for t in range(n_turns):
        messages.append({"role": "user", "content": first if t == 0 else f"and turn {t}?"})
        answer = await post(t, {"model": "scout", "messages": messages})
        messages.append({"role": "assistant", "content": answer})
        answered.append(who(answer))
    return answered


STAFF_TOKEN = "staff-token-affinity-0123456789"


def gateway_process(urls: list[str], redis_url: str | None = None) -> procs.Proc:
    return procs.gateway(urls, None, redis_url=redis_url, mutate=no_cache,
                         extra_env={"SCOUT_STAFF_KEYS": f"ops:{STAFF_TOKEN}"})


async def all_up(s: aiohttp.ClientSession, g: procs.Proc) -> None:
    """Until the gateway has probed every replica up: no turn guesses."""
    for _ in range(200):
        async with s.get(f"{g.url}/health",
                         headers={"Authorization": f"Bearer {STAFF_TOKEN}"}) as r:
            targets = (await r.json()).get("targets", {})
        if all(targets.get(f"onprem.{n}", {}).get("state") == "up" for n in NAMES):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"replicas not all up: {targets}")


def poster(s: aiohttp.ClientSession, gateway_of):
    """`post(turn, body)` for `converse`, each turn to the gateway `gateway_of(turn)`."""
    async def post(turn, body):
        async with s.post(f"{gateway_of(turn).url}/v1/chat/completions", json=body) as r:
            assert r.status == 200, await r.text()
            return (await r.json())["choices"][0]["message"]["content"]
    return post


async def test_two_gateway_processes_send_a_conversation_to_the_same_replica():
    key = procs.KEYS["ONPREM_API_KEY"]
    async with three(api_key=key) as sims:
        gateways = [gateway_process([s.url for s in sims]) for _ in range(2)]
        try:
            async with aiohttp.ClientSession(headers=procs.API_HEADERS) as s:
                for g in gateways:
                    await all_up(s, g)
                # turns alternate between the two processes
                post = poster(s, lambda turn: gateways[turn % 2])
                spreads = [await converse(post, 4, f"Which hybrid SUV would you recommend "
                                                  f"for family number {c}?")
                           for c in range(9)]
        finally:
            for g in gateways:
                g.stop()
    for turns in spreads:
        assert len(set(turns)) == 1, f"one conversation, one replica: {turns}"
    assert len({t[0] for t in spreads}) >= 2, "conversations spread over the replicas"


def app_poster(client):
    """`post(turn, body)` for `converse`, every turn to one test client of the gateway."""
    async def post(turn, body):
        r = await client.post("/v1/chat/completions", json=body)
        assert r.status == 200, await r.text()
        return (await r.json())["choices"][0]["message"]["content"]
    return post


def bound_placements(conversations: list[str]) -> dict[str, str]:
    """Where one gateway's own bounded-load homes would put these, met in this order."""
    ring = {n: n for n in NAMES}
    homes = Homes(1.25, 600)
    return {c: homes.place(c, [u for _, u in rendezvous(c, ring)], rendezvous(c, ring)[0][1], 0.0)
            for c in conversations}


async def test_gateways_sharing_redis_agree_on_the_conversations_the_bound_moved(redis_server):
    """Homes the conversation bound chose depend on what a gateway has seen. Two gateways
    that meet the same conversations in opposite orders, and a gateway started afresh,
    still send each conversation where the first gateway placed it: they read its home in
    Redis."""
    asks = [f"Any used pickup trucks for customer {c}?" for c in range(12)]
    ids = [conversation_key("bench", [{"role": "user", "content": a}]) for a in asks]
    assert all(ids)
    alone = bound_placements(ids), bound_placements(ids[::-1])   # type: ignore[arg-type]
    differ = [a for a, c in zip(asks, ids, strict=True) if alone[0][c] != alone[1][c]]
    assert differ, "on its own, each gateway would place some of these elsewhere"
    async with three(api_key=procs.KEYS["ONPREM_API_KEY"]) as sims:
        urls = [s.url for s in sims]
        a, b = gateway_process(urls, redis_server.url), gateway_process(urls, redis_server.url)
        started = [a, b]
        try:
            async with aiohttp.ClientSession(headers=procs.API_HEADERS) as s:
                await all_up(s, a)
                await all_up(s, b)
                on_a = [await converse(poster(s, lambda t: a), 1, ask) for ask in asks]
                # The other gateway through openai-python, as a Python backend would call it.
                sdk = openai.AsyncOpenAI(api_key=procs.API_HEADERS["Authorization"][7:],
                                         base_url=f"{b.url}/v1", max_retries=0)
                async def sdk_post(turn, body):
                    got = await sdk.chat.completions.create(**body)
                    return got.choices[0].message.content
                on_b = {ask: await converse(sdk_post, 1, ask) for ask in asks[::-1]}
                await sdk.close()
                a.stop()
                fresh = gateway_process(urls, redis_server.url)
                started.append(fresh)
                await all_up(s, fresh)
                on_fresh = [await converse(poster(s, lambda t: fresh), 1, ask) for ask in asks]
        finally:
            for g in started:
                g.stop()
    assert [on_b[ask] for ask in asks] == on_a, "the other gateway, in the other order"
    assert on_fresh == on_a, "a gateway started afresh"
    assert len({t[0] for t in on_a}) == 3, "spread over the three replicas"


class StoreDown:
    """Redis as the link sees it while it is down: every operation its fallback."""

    backend = "redis"

    async def get(self, key: str) -> bytes | None:
        return None

    async def set(self, key: str, value: bytes, ttl_s: float) -> bool:
        return False

    async def set_nx(self, key: str, value: bytes, ttl_s: float) -> bool | None:
        return None


async def test_a_home_is_shared_by_its_first_writer_kept_alive_and_needs_no_redis():
    ring = {n: n for n in NAMES}
    conversations = [f"customer-{i}" for i in range(12)]
    orders = {c: [u for _, u in rendezvous(c, ring)] for c in conversations}
    clock = [0.0]
    store = MemoryKV(clock=lambda: clock[0])
    one, two = (SharedHomes(Homes(1.25, 600), store, ring) for _ in range(2))
    for c in conversations:
        await one.settle(c, orders[c], orders[c][0], 0.0)
    for c in reversed(conversations):
        await two.settle(c, orders[c], orders[c][0], 0.0)
    placed = {c: one.homes.get(c).url for c in conversations}   # type: ignore[union-attr]
    assert not any(one.due(c, 1.0) for c in conversations), "a shared home asks nothing more"
    assert one.due(conversations[0], 300.0) and one.due("someone new", 1.0)
    assert {c: two.homes.get(c).url for c in conversations} == placed   # type: ignore[union-attr]
    assert placed != bound_placements(conversations[::-1]), "what `two` alone would choose"
    # Turns keep the record alive past its first TTL; a conversation with no turns expires.
    for t in (250.0, 500.0, 750.0):
        clock[0] = t
        await one.settle(conversations[0], orders[conversations[0]], orders[conversations[0]][0], t)
    assert await store.get(SharedHomes.key(conversations[0])) == placed[conversations[0]].encode()
    assert await store.get(SharedHomes.key(conversations[1])) is None
    # Redis down: this gateway places on its own, and the turn goes on.
    alone = SharedHomes(Homes(1.25, 600), StoreDown(), ring)   # type: ignore[arg-type]
    for c in conversations:
        await alone.settle(c, orders[c], orders[c][0], 0.0)
    assert {c: alone.homes.get(c).url for c in conversations} == \
        bound_placements(conversations)   # type: ignore[union-attr]
    # Back up: a home placed in the outage gives way to the one another gateway shared.
    alone.store = store
    for c in reversed(conversations):
        await alone.settle(c, orders[c], orders[c][0], 750.0)
    assert alone.homes.get(conversations[0]).url == placed[conversations[0]]   # type: ignore[union-attr]


def provider_with(in_flight: dict[str, int], ejected: frozenset[str] | set[str] = frozenset(),
                  bound: float = 1.25, slack: int = 2, conversations: float = 0.0,
                  cache_usage: dict[str, float] | None = None) -> OnpremProvider:
    """A provider over three named replicas; `conversations`: the conversation bound
    (0, hashing alone, unless a test is about that bound)."""
    cfg = OnpremConfig.model_validate({
        "url": [f"http://{n}:8000" for n in NAMES], "affinity_load_bound": bound,
        "affinity_slack": slack, "affinity_conversation_bound": conversations,
        "replicas": [{"name": n, "url": f"http://{n}:8000"} for n in NAMES]})

    class Health:
        def usable(self, url: str) -> bool:
            return url not in ejected

        def why_not(self, url: str) -> str:
            return "ejected"

        def waiting(self, url: str) -> float:
            return 0.0

        def cache_usage(self, url: str) -> float | None:
            return (cache_usage or {}).get(url)

        def observe_target_failure(self, url: str, reason: str) -> None: ...

        def observe_target_success(self, url: str) -> None: ...

        def turn_started(self, url: str) -> None: ...

        def turn_ended(self, url: str) -> None: ...

        def turn_moved(self, url: str) -> None: ...

    p = OnpremProvider(cfg, None, Health())   # type: ignore[arg-type]
    p._in_flight.update(in_flight)
    return p


def test_the_load_bound_passes_a_turn_to_the_next_replica_when_its_own_is_busy():
    order = [url for _, url in rendezvous("conv-7", {n: f"http://{n}:8000" for n in NAMES})]
    quiet = provider_with({})
    assert quiet._pick_url(set(), "conv-7") == order[0], "its own replica while it has room"
    # Its replica carries 4 turns, the others 1: above 1.25 x the mean (with no slack),
    # so the next one.
    busy = provider_with({order[0]: 4, order[1]: 1, order[2]: 1}, slack=0)
    assert busy._pick_url(set(), "conv-7") == order[1]
    # All equally busy: within the bound, it stays.
    assert provider_with({u: 3 for u in order}, slack=0)._pick_url(set(), "conv-7") == order[0]
    # The default slack of 2 turns: a turn or two more than the bound keeps its history...
    assert provider_with({order[0]: 3, order[1]: 1, order[2]: 1})._pick_url(
        set(), "conv-7") == order[0]
    # ...and a replica well above it passes the turn on.
    assert provider_with({order[0]: 9, order[1]: 3, order[2]: 3})._pick_url(
        set(), "conv-7") == order[1]


def test_a_first_turn_goes_to_the_least_busy_replica_and_a_later_one_to_its_home():
    """A new conversation has no history to find: on a server that answers one request at a
    time, two conversations under way on one replica queue there while another idles."""
    ring = {n: f"http://{n}:8000" for n in NAMES}
    order = [url for _, url in rendezvous("conv-7", ring)]
    # Its first choice answers another turn: its first turn goes to a free one...
    assert provider_with({order[0]: 1}, conversations=1.25)._pick_url(
        set(), "conv-7", fresh=True) == order[1]
    # ...but a turn with history, new to this gateway, goes where the hash says it lives.
    assert provider_with({order[0]: 1}, conversations=1.25)._pick_url(
        set(), "conv-7") == order[0]
    # Idle, every gateway places it alike: by the hash.
    assert provider_with({}, conversations=1.25)._pick_url(
        set(), "conv-7", fresh=True) == order[0]
    # Of two free replicas, the one with no conversation under way: one conversation lives
    # on each, and the one on order[2] has been quiet for two minutes.
    p = provider_with({order[0]: 1}, conversations=2.0)
    for url in order:
        c = next(f"other-{i}" for i in itertools.count()
                 if rendezvous(f"other-{i}", ring)[0][1] == url and not p._homes.get(f"other-{i}"))
        assert p._pick_url(set(), c) == url
    quiet = p._homes.get(c)
    assert quiet is not None
    quiet.seen -= 120
    assert p._pick_url(set(), "conv-7", fresh=True) == order[2]
    assert p._pick_url(set(), "conv-7") == order[2], "and it stays there"


async def test_the_provider_tells_a_first_turn_by_its_missing_answers():
    ring = {n: f"http://{n}:8000" for n in NAMES}
    order = [url for _, url in rendezvous("conv-9", ring)]
    asked: list[str] = []

    class Client:
        async def stream(self, url: str, request: TierRequest, messages: Any):
            asked.append(url.removesuffix("/v1/chat/completions"))
            yield Delta(text="hello", model="m")

    async def turn(p: OnpremProvider, messages: list[dict[str, str]]) -> str:
        p._client = Client()   # type: ignore[assignment]
        request = TierRequest(messages=messages, intent=INTENT, conversation="conv-9")
        async for _ in p.stream(request):
            pass
        return asked[-1]

    question = {"role": "user", "content": "Any red trucks?"}
    history = [question, {"role": "assistant", "content": "Two."},
               {"role": "user", "content": "Which is cheaper?"}]
    assert await turn(provider_with({order[0]: 1}, conversations=1.25), [question]) == order[1]
    assert await turn(provider_with({order[0]: 1}, conversations=1.25), history) == order[0]


def test_an_ejected_replicas_conversations_move_to_their_next_and_only_theirs():
    ring = {n: f"http://{n}:8000" for n in NAMES}
    conversations = [f"conv-{i}" for i in range(60)]
    home = {c: rendezvous(c, ring)[0][1] for c in conversations}
    gone = ring["r2"]
    p = provider_with({}, ejected=frozenset({gone}))
    for c in conversations:
        got = p._pick_url(set(), c)
        if home[c] == gone:
            assert got == rendezvous(c, ring)[1][1], "to its next replica"
        else:
            assert got == home[c], "no other conversation moves"
    back = provider_with({})
    assert all(back._pick_url(set(), c) == home[c] for c in conversations), "and they return"


def test_the_conversation_bound_evens_the_spread_and_never_moves_a_placed_conversation():
    ring = {n: f"http://{n}:8000" for n in NAMES}
    conversations = [f"conv-{i}" for i in range(16)]
    hashed = collections.Counter(rendezvous(c, ring)[0][1] for c in conversations)
    mean = len(conversations) / len(NAMES)
    assert max(hashed.values()) > 1.25 * mean, "hashing alone: 8 of 16 on one replica"
    p = provider_with({}, conversations=1.25)
    placed = {c: p._pick_url(set(), c) for c in conversations}
    spread = collections.Counter(placed.values())
    assert max(spread.values()) <= 1.25 * mean, (spread, hashed)
    assert sum(placed[c] == rendezvous(c, ring)[0][1] for c in conversations) >= 10, \
        "most stay on their first choice"
    for _ in range(3):   # later turns: each on its own replica, whatever the counts say
        assert all(p._pick_url(set(), c) == placed[c] for c in conversations)


def test_with_the_conversation_bound_an_ejected_replicas_conversations_leave_and_return():
    ring = {n: f"http://{n}:8000" for n in NAMES}
    ejected: set[str] = set()
    p = provider_with({}, ejected=ejected, conversations=1.25)
    conversations = [f"customer-{i}" for i in range(30)]
    placed = {c: p._pick_url(set(), c) for c in conversations}
    moved = [c for c in conversations if placed[c] != rendezvous(c, ring)[0][1]]
    gone = placed[moved[0]]   # a replica holding conversations of both kinds
    on_gone = [c for c in conversations if placed[c] == gone]
    assert {placed[c] == rendezvous(c, ring)[0][1] for c in on_gone} == {True, False}, \
        "placed there by the hash and by the bound"
    ejected.add(gone)
    during = {c: p._pick_url(set(), c) for c in conversations}
    assert all(during[c] != gone for c in conversations)
    assert all(during[c] == placed[c] for c in conversations if placed[c] != gone), \
        "no other conversation moves"
    ejected.discard(gone)
    assert all(p._pick_url(set(), c) == gone for c in on_gone), "and they all come back"


def test_a_replica_with_its_kv_cache_full_takes_no_new_conversation_and_keeps_its_own():
    ring = {n: f"http://{n}:8000" for n in NAMES}
    usage: dict[str, float] = {}
    p = provider_with({}, conversations=1.25, cache_usage=usage)
    before = [f"customer-{i}" for i in range(12)]
    placed = {c: p._pick_url(set(), c) for c in before}
    full = ring["r1"]
    assert full in placed.values()
    usage.update({full: 0.95, ring["r2"]: 0.3})   # r3 says nothing: it has room
    after = [f"newcomer-{i}" for i in range(30)]
    wanting = [c for c in after if rendezvous(c, ring)[0][1] == full]
    assert wanting
    assert all(p._pick_url(set(), c) != full for c in after), "no new history on a full one"
    assert all(p._pick_url(set(), c) == placed[c] for c in before), "its own stay"
    usage.update({u: 0.97 for u in ring.values()})   # all full: placed as if none were
    late = [f"late-{i}" for i in range(30)]
    assert full in {p._pick_url(set(), c) for c in late}


async def test_a_full_kv_cache_seen_by_the_probes_sends_new_conversations_elsewhere(gw_client):
    async with three() as sims:
        client = await gw_client(create_app(settings_for(sims)))
        post = app_poster(client)

        key = "Which hybrid SUV would you recommend for a family of %d?"
        home = (await converse(post, 1, key % 0))[0]
        sim = sims[NAMES.index(home)]
        await sim.set_fault("none", kv_cache_usage=0.96)
        probes = sim.stats.probes
        for _ in range(200):   # two probe rounds after the change: the monitor has read it
            if sim.stats.probes >= probes + 6:
                break
            await asyncio.sleep(0.05)
        newcomers = [(await converse(post, 1, key % n))[0] for n in range(1, 13)]
        assert home not in newcomers, newcomers
        assert await converse(post, 2, key % 0) == [home, home], "its own conversation stays"
        await sim.set_fault("none", kv_cache_usage=0.1)


async def test_an_ejected_replica_loses_its_conversations_until_it_is_back(gw_client):
    async with three() as sims:
        client = await gw_client(create_app(settings_for(sims)))
        post = app_poster(client)

        async def replica_state(name: str) -> str:
            health = await (await client.get("/health", headers=STAFF)).json()
            return health["targets"][f"onprem.{name}"]["state"]

        async def until(name: str, wanted: set[str]) -> None:
            for _ in range(200):   # the monitor probes every 0.5 s here
                if (state := await replica_state(name)) in wanted:
                    return
                await asyncio.sleep(0.1)
            raise AssertionError(f"{name} is {state}, not {wanted}")

        first = "Which hybrid SUV would you recommend for a family of five?"
        home = (await converse(post, 1, first))[0]
        sim = sims[NAMES.index(home)]
        await sim.set_fault("refuse")
        await until(home, {"down"})
        moved = await converse(post, 2, first)
        assert home not in moved and len(set(moved)) == 1, "to one other replica, all turns"
        await sim.set_fault("none")
        await until(home, {"up"})
        assert await converse(post, 2, first) == [home, home], "back where its history is"


async def test_the_prompt_keeps_its_prefix_and_the_cache_hit_is_passed_on(gw_client):
    """A grounded conversation of three turns: each turn's prompt begins, byte for byte, with
    the whole prompt the previous turn sent, its stock table included; the replica's prefix
    cache reads it, and the OpenAI API and /metrics say how much."""
    async with three(prefix_cache_tokens=100_000) as sims:
        client = await gw_client(create_app(settings_for(sims)))
        messages: list[dict[str, str]] = []
        sent: list[list[dict[str, Any]]] = []
        usages = []
        for question in ("Any used Honda SUVs on the lot?", "Do you have a red one?",
                         "Which of those has the lowest mileage?"):
            messages.append({"role": "user", "content": question})
            r = await client.post("/v1/chat/completions", json={
                "model": "scout", "messages": messages, "stream": True,
                "stream_options": {"include_usage": True}})
            events = [orjson.loads(line[6:]) for line in (await r.read()).split(b"\n")
                      if line.startswith(b"data: {")]
            answer = "".join(c["choices"][0]["delta"].get("content") or ""
                             for c in events if c["choices"])
            usages.append(events[-1]["usage"])
            replica = sims[NAMES.index(who(answer))]
            sent.append(replica.stats.last_messages)
            messages.append({"role": "assistant", "content": answer})
        for before, after in itertools.pairwise(sent):
            # The previous turn's whole prompt, its own table and question included, then
            # its answer, then this turn's table and question.
            assert before[-2]["role"] == "system" and \
                before[-2]["content"].startswith((GROUNDING_HEADER, HELD_STOCK))
            assert orjson.dumps(after[:len(before)]) == orjson.dumps(before), \
                "the history comes first, byte for byte as it was sent"
            assert after[len(before)]["role"] == "assistant"
            assert after[-2]["role"] == "system" and after[-1]["role"] == "user"
        # The red ones are among the Hondas listed first, and "which of those…" asks of
        # them again: no row is sent twice, later turns name them by stock number.
        lines = [line for m in sent[-1] if m["role"] == "system"
                 for line in m["content"].splitlines() if line.startswith("| ")]
        rows = [line for line in lines if line != "| stock | vehicle |"]
        assert rows and len(rows) == len(set(rows)), "each car's row once in the prompt"
        assert sum(m["content"].startswith(GROUNDING_HEADER) for m in sent[-1]) == 1
        for later in (sent[-1][-2]["content"], sent[-1][-5]["content"]):
            assert later.startswith(HELD_STOCK)
            named = later.removeprefix(HELD_STOCK).strip(" .").split(", ")
            assert named and all(any(r.startswith(f"| {n} |") for r in rows) for n in named)
        assert usages[0].get("prompt_tokens_details", {}).get("cached_tokens", 0) == 0
        for u in usages[1:]:
            cached = u["prompt_tokens_details"]["cached_tokens"]
            assert 0 < cached < u["prompt_tokens"], "the history came from the cache"
        metrics = await (await client.get("/metrics", headers=STAFF)).text()
        assert "scout_replica_cached_prompt_tokens_total{" in metrics
        tiles = (await (await client.get("/dashboard/data", headers=STAFF)).json())["tiles"]
        assert 0 < tiles["prefix_hit_rate"] < 1
        assert sum(tiles["replica_turn_share"].values()) == pytest.approx(1.0)
        home = next(iter(tiles["replica_prefix_hit_rate"]))
        assert list(tiles["replica_turn_share"]) == [home], "three turns, one replica"


@pytest.mark.parametrize("affinity", [True, False])
async def test_affinity_can_be_turned_off(gw_client, affinity):
    async with three() as sims:
        client = await gw_client(create_app(settings_for(sims, affinity=affinity)))

        async def post(turn, body):
            r = await client.post("/v1/chat/completions", json=body)
            return (await r.json())["choices"][0]["message"]["content"]

        turns = await converse(post, 6, "Which truck tows a boat best?")
    assert (len(set(turns)) == 1) == affinity, turns


def test_replicas_behind_nginx_are_reached_on_their_own_chat_path():
    cfg = OnpremConfig.model_validate({"url": "http://gpu-box:8000",
                                       "replicas": ["replica-1", "replica-2"]})
    assert cfg.replicas[0] == Replica("replica-1", "http://gpu-box:8000/replicas/replica-1")
    p = OnpremProvider(cfg, None, None)   # type: ignore[arg-type]
    url = p._pick_url(set(), "conv-1")
    assert url in {r.base_url for r in cfg.replicas}, "a replica's own path"
    assert p._pick_url(set(), None) == "http://gpu-box:8000", "no conversation: nginx balances"


# A customer's machine: openai-python in a network namespace, reaching the gateway over a
# veth link, as the frontend's server reaches it over the network.
GATEWAY_ADDR, CUSTOMER_ADDR = "10.254.0.1", "10.254.0.2"
CUSTOMER = """
import json, sys, openai
url, key, messages = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
client = openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=60)
print(client.chat.completions.create(model="scout", messages=messages).choices[0].message.content)
"""


async def customer_turn(net, url: str, messages: list[dict[str, str]]) -> str:
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", net.ns, sys.executable, "-c", CUSTOMER, url, API_KEY,
        orjson.dumps(messages).decode(), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, err.decode()[-2000:]
    return out.decode().strip()


async def test_a_customers_first_turn_over_the_network_avoids_a_busy_replica_and_stays(
        aiohttp_server):
    """End to end: while one replica answers a long turn, a new conversation whose hash
    names that replica starts on a free one, and its next turn follows it there even once
    the first is free again (openai-python from another machine's address)."""
    netns_or_skip()
    def home(ask: str) -> str:   # the replica a conversation opening so hashes to
        return rendezvous(conversation_key("vercel", [{"role": "user", "content": ask}]) or "",
                          {n: n for n in NAMES})[0][0]
    first = "Any used Honda SUVs for a family of five?"
    busy = home(first)
    # The long turn's own conversation, with the same home: an idle box places it by hash.
    long_ask = next(a for i in itertools.count()
                    if home(a := f"Tell me everything about truck {i}") == busy)
    net = Namespace("scout-aff", GATEWAY_ADDR, CUSTOMER_ADDR)
    async with contextlib.AsyncExitStack() as stack:
        sims = [await stack.enter_async_context(running(
            answer=f"from {n}", **({"tokens": 6000, "token_interval_s": 0.05} if n == busy
                                   else {}))) for n in NAMES]
        net.up()
        stack.callback(net.down)
        # A conversation bound loose enough that it alone would leave the new conversation
        # on its hash's replica: what moves it is its being a first turn.
        server = await aiohttp_server(create_app(settings_for(
            sims, affinity_conversation_bound=3.0)), host=GATEWAY_ADDR)
        url = f"http://{GATEWAY_ADDR}:{server.port}/v1"
        s = await stack.enter_async_context(aiohttp.ClientSession(headers=AUTH))
        long_turn = await stack.enter_async_context(s.post(f"{url}/chat/completions", json={
            "model": "scout", "stream": True,
            "messages": [{"role": "user", "content": long_ask}]}))
        assert long_turn.status == 200
        async for line in long_turn.content:   # its first words: the replica is answering it
            if b'"content"' in line and b'"content":""' not in line:
                break
        messages = [{"role": "user", "content": first}]
        answer = await customer_turn(net, url, messages)
        placed = who(answer)
        assert placed != busy, f"a first turn queued behind the long one on {busy}"
        long_turn.close()   # the long turn's customer leaves: its replica is free again
        for _ in range(300):
            if sims[NAMES.index(busy)].stats.running == 0:
                break
            await asyncio.sleep(0.1)
        assert sims[NAMES.index(busy)].stats.running == 0, "the long answer was not cancelled"
        messages += [{"role": "assistant", "content": answer},
                     {"role": "user", "content": "Which has the lowest mileage?"}]
        assert who(await customer_turn(net, url, messages)) == placed, \
            "the next turn goes where its history is, not to its hash's replica"
