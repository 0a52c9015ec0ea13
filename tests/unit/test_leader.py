"""Health leader election: one expiring key, refreshed while held, deleted on a clean stop."""

from __future__ import annotations

from gateway.health.leader import LEADER, Leadership
from gateway.state.kv import MemoryKV


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_one_leader_and_a_clean_stop_hands_over_at_once():
    clock = Clock()
    kv = MemoryKV(clock=clock)
    a, b = Leadership(kv, 4.0, lambda: True), Leadership(kv, 4.0, lambda: True)
    assert await a.elect() == "leader"
    assert await b.elect() == "follower"
    clock.now += 3.0
    assert await a.elect() == "leader"      # refreshed while held
    clock.now += 3.0
    assert await b.elect() == "follower"    # 6 s after the first election: still a's
    await a.release()
    assert await kv.get(LEADER) is None
    assert await b.elect() == "leader"      # at once, not after the key's 4 s


async def test_a_dead_leader_is_replaced_when_its_key_expires():
    clock = Clock()
    kv = MemoryKV(clock=clock)
    a, b = Leadership(kv, 4.0, lambda: True), Leadership(kv, 4.0, lambda: True)
    assert await a.elect() == "leader"
    clock.now += 3.9
    assert await b.elect() == "follower"
    clock.now += 0.2                         # a stopped refreshing: its key is gone
    assert await b.elect() == "leader"
    await a.release()                        # a late release must not delete b's key
    assert await kv.get(LEADER) == b.me.encode()


async def test_without_redis_every_process_watches_for_itself():
    kv = MemoryKV()
    up = {"v": True}
    lead = Leadership(kv, 4.0, lambda: up["v"])
    assert await lead.elect() == "leader"
    up["v"] = False
    assert await lead.elect() == "local"
    assert await Leadership(kv, 4.0, None).elect() == "local"
