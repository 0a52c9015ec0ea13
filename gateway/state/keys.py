"""Every Redis key prefix the gateway uses, in one place.

All shared state expires by itself, so a dead writer never leaves stale data
behind (a health record outlives its monitor by at most its TTL).
"""

from __future__ import annotations

ROOT = "scout:"
CACHE = ROOT + "cache:"        # cache:<intent>:<digest>      → a CachedAnswer (JSON)
LOCK = ROOT + "lock:"          # lock:<cache key>             → stampede leader token
SESSION = ROOT + "session:"    # session:<session id>         → list of messages (JSON)
ANSWER = ROOT + "answer:"      # answer:<session id>:<msg id> → a finished or partial answer
STREAM = ROOT + "stream:"      # stream:<session id>:<msg id> → the answer's deltas (a stream)
HEALTH = ROOT + "health:"      # health:<target>              → a probe record
COUNTER = ROOT + "count:"      # count:<name>                 → an expiring counter
RATE = ROOT + "rate:"          # rate:<scope>                 → rate-limit windows
RESPONSE = ROOT + "response:"  # response:<resp id>           → a stored Responses API turn
HOME = ROOT + "home:"          # home:<conversation digest>   → the replica (name) it lives on
ITEM = ROOT + "item:"          # item:<item id>               → one output item of it
