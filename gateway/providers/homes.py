"""Which replica holds each conversation: rendezvous hashing, bounded loads, shared homes.

A conversation's turns go to the replica whose prefix cache holds its history. The hash
alone gives every gateway the same answer with no state; the bound on conversations per
replica evens the spread, and the homes it picks are written to the shared store (Redis)
so that every gateway, and a restarted one, sends a conversation where the first placed it.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.state import keys
from gateway.state.kv import KV


def rendezvous(conversation: str, ring: Mapping[str, str]) -> list[tuple[str, str]]:
    """The replicas (name, URL) in this conversation's order: highest random weight first.

    Rendezvous hashing: each replica's weight is a hash of the conversation and its name,
    so any process picks the same order, and a replica that leaves moves only its own
    conversations (each to its next), which come back when it returns."""
    def weight(name: str) -> bytes:
        return hashlib.blake2b(f"{conversation}\0{name}".encode(), digest_size=8).digest()
    return sorted(ring.items(), key=lambda item: weight(item[0]), reverse=True)


@dataclass(slots=True)
class Home:
    url: str          # the replica it is on now
    wanted: str       # the replica it returns to (its home, or a first choice that was down)
    seen: float       # its last turn (monotonic)
    shared: float = float("-inf")   # when the shared store last agreed (monotonic)


class Homes:
    """Which replica each recent conversation lives on: consistent hashing with bounded
    loads, counted in conversations (Mirrokni, Thorup and Zadimoghaddam, 2018).

    A new conversation goes to the first replica of its rendezvous order that holds no
    more than `bound` × the mean number of conversations, and stays there: its later
    turns find their history in that replica's prefix cache. Hashing alone leaves the
    spread to chance (16 conversations on three replicas put 9 on one in a measured run);
    the bound evens it without moving a conversation once placed. A conversation's first
    turn, which has no history anywhere to lose, goes to the least busy of the replicas
    within the bound instead: the fewest turns in flight, then the fewest conversations
    active in the last `ACTIVE_S`, then its rendezvous order. Two conversations under way
    on one replica queue behind each other there on a server that answers one at a time,
    while another replica may sit idle. A conversation whose home
    is down goes elsewhere meanwhile and back when it returns, as does one whose first
    choice was down when it was placed. Homes idle for `idle_s` are forgotten.

    These are one process's; `SharedHomes` makes them every gateway's."""

    KEPT = 100_000   # conversations remembered at most: a few MB
    ACTIVE_S = 60.0  # a conversation under way: a turn this recently (a customer's pause)

    def __init__(self, bound: float, idle_s: float) -> None:
        self.bound, self.idle_s = bound, idle_s
        self._homes: dict[str, Home] = {}
        # Each replica's conversations, the one with the most recent turn last.
        self._on: dict[str, OrderedDict[str, None]] = {}

    def get(self, conversation: str) -> Home | None:
        return self._homes.get(conversation)

    def count(self, url: str) -> int:
        """The conversations living on `url`."""
        return len(self._on.get(url, ()))

    def active(self, url: str, now: float) -> int:
        """The conversations on `url` with a turn in the last `ACTIVE_S`."""
        n = 0
        for c in reversed(self._on.get(url, {})):
            if now - self._homes[c].seen > self.ACTIVE_S:
                break
            n += 1
        return n

    def place(self, conversation: str, order: list[str], first: str, now: float,
              full: frozenset[str] = frozenset(),
              busy: Mapping[str, float] | None = None) -> str:
        """The conversation's replica among `order` (usable replicas, in its rendezvous
        order); `first` is its first choice among all replicas, usable or not. A new
        conversation is not placed on a replica in `full` (its KV cache nearly full: a new
        history there pushes out those it holds) while another has room. `busy` (turns in
        flight per replica) is given for a conversation's first turn: it goes to the least
        busy replica within the bound rather than the first."""
        home = self._homes.get(conversation)
        if home is not None:
            url = home.wanted if home.wanted in order else home.url   # back where it belongs
            if url in order:
                self._set(conversation, url, home.wanted, now)
                return url
        if len(self._homes) >= self.KEPT or (home is None and len(self._homes) % 1024 == 0):
            self._forget_idle(now)
        if home is not None:
            self._drop(conversation)
        total = sum(self.count(u) for u in order)
        cap = max(self.bound * (total + 1) / len(order), 1.0)
        roomy = [u for u in order if u not in full] or order
        least = min(self.count(u) for u in roomy)
        within = [u for u in roomy if self.count(u) + 1 <= cap] or \
            [u for u in roomy if self.count(u) == least]   # none in bound: the emptiest
        url = within[0] if busy is None else \
            min(within, key=lambda u: (busy.get(u, 0.0), self.active(u, now)))
        # It returns to its home when that is back; a new one to its first choice only if
        # that was down (one the bound moved stays where the bound put it).
        wanted = home.wanted if home is not None else first if first not in order else url
        self._set(conversation, url, wanted, now)
        return url

    def adopt(self, conversation: str, url: str, now: float) -> Home:
        """The conversation lives on `url`, as another gateway placed it."""
        self._set(conversation, url, url, now)
        return self._homes[conversation]

    def _set(self, conversation: str, url: str, wanted: str, now: float) -> None:
        old = self._homes.get(conversation)
        if old is not None and old.url != url:
            del self._on[old.url][conversation]
        self._on.setdefault(url, OrderedDict())[conversation] = None
        self._on[url].move_to_end(conversation)
        if old is None:
            self._homes[conversation] = Home(url, wanted, now)
        else:
            old.url, old.wanted, old.seen = url, wanted, now

    def _drop(self, conversation: str) -> None:
        del self._on[self._homes.pop(conversation).url][conversation]

    def _forget_idle(self, now: float) -> None:
        for c in [c for c, h in self._homes.items() if now - h.seen > self.idle_s]:
            self._drop(c)
        while len(self._homes) >= self.KEPT:   # still full: the oldest go
            self._drop(min(self._homes, key=lambda c: self._homes[c].seen))


class SharedHomes:
    """Homes every gateway agrees on, through the shared store.

    The hash alone already agrees for a conversation placed on its first choice; one the
    bound moved was placed by what one gateway had seen, and another gateway (or this one
    after a restart) would place it by what it has seen. So the gateway that places a
    conversation writes its home to the store, first writer wins (SET NX), and a gateway
    that meets a conversation it does not know reads it there before placing it. A
    conversation's record lives as long as its home would (`idle_s`), kept alive by its
    turns. Where the store cannot answer, this gateway's own placement stands: the turn
    never waits on Redis beyond its short timeout."""

    def __init__(self, homes: Homes, store: KV, ring: Mapping[str, str]) -> None:
        self.homes, self.store = homes, store
        self._urls = dict(ring)                              # name → URL
        self._names = {url: name for name, url in ring.items()}

    @staticmethod
    def key(conversation: str) -> str:
        return keys.HOME + hashlib.blake2b(conversation.encode(), digest_size=16).hexdigest()

    def due(self, conversation: str, now: float) -> bool:
        """Has `settle` anything to do: a conversation not known here, placed while the
        store could not answer, or whose shared record wants keeping alive?"""
        home = self.homes.get(conversation)
        return home is None or now - home.shared >= self.homes.idle_s / 2

    async def settle(self, conversation: str, order: list[str], first: str, now: float,
                     full: frozenset[str] = frozenset(),
                     busy: Mapping[str, float] | None = None) -> None:
        """Make this gateway's home for the conversation the shared one (`order`, `first`,
        `full`, `busy`: as for `Homes.place`)."""
        key, ttl = self.key(conversation), self.homes.idle_s
        home = self.homes.get(conversation)
        if home is not None and home.shared > float("-inf"):
            if now - home.shared >= ttl / 2:   # keep the shared record alive
                if await self.store.set(key, self._names[home.wanted].encode(), ttl):
                    home.shared = now
            return
        # Not known here, or placed here while the store could not answer: the store's
        # home, if another gateway wrote one, is the one every gateway keeps.
        if await self._read(key, conversation, now) is not None:
            return
        if home is None:
            self.homes.place(conversation, order, first, now, full, busy)
        placed = self.homes.get(conversation)
        assert placed is not None
        won = await self.store.set_nx(key, self._names[placed.wanted].encode(), ttl)
        if won:
            placed.shared = now
        elif won is False:   # another gateway placed it a moment before: its home it is
            await self._read(key, conversation, now)

    async def _read(self, key: str, conversation: str, now: float) -> Home | None:
        stored = await self.store.get(key)
        url = self._urls.get(stored.decode(errors="replace")) if stored else None
        if url is None:   # none, or a replica no longer listed
            return None
        home = self.homes.adopt(conversation, url, now)
        home.shared = now
        return home
