"""The shared KV contract, held by both backends (in-process, and Redis via fakeredis)."""

from __future__ import annotations

import asyncio

import fakeredis
import pytest

from gateway.cache.stampede import Stampede
from gateway.cache.store import AnswerCache, CachedAnswer
from gateway.config import SessionsConfig
from gateway.sessions import SessionIds, SessionStore, trim_history
from gateway.state.kv import MemoryKV, RedisKV
from gateway.state.redis_link import RedisLink, describe, redis_where


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "fakeredis"])
async def kv(request):
    if request.param == "memory":
        yield MemoryKV()
        return
    link = RedisLink("redis://fake:6379/0", timeout_s=1,
                     client=fakeredis.FakeAsyncRedis())
    yield RedisKV(link)
    await link.close()


async def test_get_set_and_set_nx(kv):
    assert await kv.get("a") is None
    assert await kv.set("a", b"1", 60) is True
    assert await kv.get("a") == b"1"
    assert await kv.set_nx("a", b"2", 60) is False
    assert await kv.set_nx("b", b"2", 60) is True
    await kv.delete_if_equals("b", b"other")
    assert await kv.get("b") == b"2", "someone else's lock is not released"
    await kv.delete_if_equals("b", b"2")
    assert await kv.get("b") is None


async def test_lists_are_trimmed_to_their_newest_items(kv):
    assert await kv.list_all("l") == []
    await kv.list_append("l", [b"1", b"2"], max_len=3, ttl_s=60)
    await kv.list_append("l", [b"3", b"4"], max_len=3, ttl_s=60)
    assert await kv.list_all("l") == [b"2", b"3", b"4"]


async def test_counters(kv):
    assert [await kv.incr("c", 60) for _ in range(3)] == [1, 2, 3]


async def test_memory_expiry_and_lru_bound():
    clock = Clock()
    kv = MemoryKV(max_keys=2, clock=clock)
    await kv.set("a", b"1", 10)
    clock.now += 10
    assert await kv.get("a") is None
    await kv.set("x", b"1", 60)
    await kv.set("y", b"2", 60)
    await kv.get("x")
    await kv.set("z", b"3", 60)
    assert await kv.get("y") is None and await kv.get("x") == b"1", "least recently used goes"
    await kv.incr("n", 5)
    clock.now += 5
    assert await kv.incr("n", 5) == 1, "an expired counter starts again"


class BrokenRedis:
    """Every command fails as if the server were gone."""

    def __getattr__(self, name):
        async def fail(*a, **k):
            raise ConnectionRefusedError(111, "Connection refused")
        return fail

    def pipeline(self, **k):
        raise ConnectionRefusedError(111, "Connection refused")

    async def aclose(self):
        pass


async def test_a_dead_redis_turns_every_operation_into_its_fallback_value():
    link = RedisLink("redis://:hunter2@10.9.9.9:6379/1", client=BrokenRedis())
    kv = RedisKV(link)
    assert await kv.get("k") is None
    assert link.state == "down" and "refused" in link.reason
    assert await kv.set("k", b"v", 1) is False
    assert await kv.set_nx("k", b"v", 1) is None, "unknown, not 'someone else holds it'"
    assert await kv.list_all("k") is None, "unreachable, not empty"
    assert await kv.incr("k", 1) is None
    assert "hunter2" not in str(link.snapshot())
    assert link.snapshot()["where"] == "10.9.9.9:6379/1"


def test_redis_where_and_describe_never_show_credentials():
    assert redis_where("redis://user:pw@host:6380/2") == "host:6380/2"
    assert "pw" not in describe(ConnectionError("Error connecting to redis://u:pw@h"), 0.05)
    assert describe(TimeoutError(), 0.05) == "no answer within 50 ms"


async def test_cache_round_trip_and_garbage_is_a_miss(kv):
    cache = AnswerCache(kv)
    answer = CachedAnswer("text", "m", 1.0, 2.0, 3, 4)
    await cache.put("k", answer, 60)
    assert await cache.get("k") == answer
    await kv.set("scout:cache:bad", b"{not json", 60)
    assert await cache.get("bad") is None


async def test_stampede_one_leader_many_followers(kv):
    cache = AnswerCache(kv)
    stampede = Stampede(kv, cache, wait_s=2)
    lease = await stampede.lead("q")
    assert lease is not None
    assert await stampede.lead("q") is None
    waiters = [asyncio.ensure_future(stampede.wait("q")) for _ in range(5)]
    await asyncio.sleep(0.05)
    assert not any(w.done() for w in waiters)
    await cache.put("q", CachedAnswer("answer", "m", 0, 1e12), 60)
    await stampede.release(lease)
    assert [a.text for a in await asyncio.gather(*waiters)] == ["answer"] * 5
    assert await stampede.lead("q") is not None, "released: the next miss may lead again"


async def test_stampede_followers_stop_waiting_when_the_leader_gives_up(kv):
    stampede = Stampede(kv, AnswerCache(kv), wait_s=0.2)
    lease = await stampede.lead("q")
    waiter = asyncio.ensure_future(stampede.wait("q"))
    await stampede.release(lease)  # the leader failed: nothing was stored
    assert await waiter is None
    lease2 = await stampede.lead("q2")
    assert lease2 is not None
    assert await stampede.wait("q2") is None, "a bounded wait, then go upstream"


def test_session_ids_are_unguessable_and_verified():
    ids = SessionIds(b"k" * 32)
    a, b = ids.new(), ids.new()
    assert a != b and ids.valid(a) and ids.valid(b)
    assert not SessionIds(b"other-key" * 4).valid(a), "ids from another key are refused"
    for bad in ("", "x", a + "x", a.replace(".", "-"), None, 7, "\x00" * 41, "é" * 41):
        assert not ids.valid(bad)


@pytest.mark.parametrize(("turns", "tokens", "kept"), [
    (20, 10_000, 7),   # everything fits
    (1, 10_000, 4),    # system + the last user/assistant pair + the new message
    (20, 30, 3),       # token budget: system + newest messages that fit
])
def test_trim_history(turns, tokens, kept):
    msgs = [{"role": "system", "content": "s"}] + [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i} " + "x" * 40}
        for i in range(6)]
    out = trim_history(msgs, turns, tokens)
    assert len(out) == kept
    assert out[0]["role"] == "system" and out[-1] == msgs[-1]


async def test_session_store_history_and_answers(kv):
    store = SessionStore(kv, SessionsConfig(max_turns=2), SessionIds(b"k" * 32))
    sid = store.ids.new()
    assert await store.history(sid) == []
    for i in range(3):
        await store.append(sid, [{"role": "user", "content": f"q{i}"},
                                 {"role": "assistant", "content": f"a{i}"}])
    history = await store.history(sid)
    assert [m["content"] for m in history] == ["q1", "a1", "q2", "a2"]
    await store.save_answer(sid, "m1", {"status": "done", "text": "t"})
    assert (await store.answer(sid, "m1"))["text"] == "t"
    assert await store.answer(store.ids.new(), "m1") is None, "another session sees nothing"


async def test_hashes_add_set_and_read_many_at_once(kv):
    await kv.hash_add("h1", {"a": 2, "b": 1}, 60)
    await kv.hash_add("h1", {"a": 3}, 60)
    await kv.hash_set("h1", {"w:p1": 7}, 60)
    await kv.hash_set("h1", {"w:p1": 4}, 60)
    assert await kv.hash_all(["h1", "missing"]) == [{"a": 5, "b": 1, "w:p1": 4}, {}]
