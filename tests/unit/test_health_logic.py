"""Health verdicts, hysteresis, backoff and tier derivation: pure tables."""

from __future__ import annotations

import orjson
import pytest

from gateway.health.probes import (
    HttpResult,
    Verdict,
    judge_openai,
    judge_path,
    judge_replica,
    read_metrics,
)
from gateway.health.targets import Target, apply_verdict, next_probe_in, tier_verdict

M = "llama-3.1-70b-instruct"
MODELS_OK = HttpResult(200, orjson.dumps({"data": [{"id": M}]}).decode())
METRICS = 'vllm:num_requests_waiting{model_name="%s"} %s\n'


@pytest.mark.parametrize(("health", "models", "metrics", "state", "words"), [
    (HttpResult(None, error="connection failed (Connection refused)"), None, None, "down",
     "refused"),
    (HttpResult(503, "Loading model"), None, None, "loading", "503"),
    (HttpResult(200), HttpResult(401), None, "misconfigured", "API key (401)"),
    (HttpResult(403), None, None, "misconfigured", "403"),
    (HttpResult(200), HttpResult(200, '{"data": [{"id": "other-model"}]}'), None, "misconfigured",
     "serves other-model, not " + M),
    (HttpResult(200), HttpResult(200, '{"data": []}'), None, "loading", "no model listed"),
    (HttpResult(200), HttpResult(None, error="no answer within 1 s"), None, "down", "no answer"),
    (HttpResult(200), MODELS_OK, HttpResult(200, METRICS % (M, "20.0")), "busy", "20 requests"),
    (HttpResult(200), MODELS_OK, HttpResult(200, METRICS % (M, "3.0")), "up", "serving"),
    (HttpResult(200), MODELS_OK, HttpResult(404), "up", "serving"),
    (HttpResult(500), None, None, "down", "500"),
    (HttpResult(404), MODELS_OK, None, "up", "serving"),   # a server with no /health
    (HttpResult(404), HttpResult(404), None, "down", "/v1/models answered 404"),
])
def test_judge_replica(health, models, metrics, state, words):
    v = judge_replica(health, models, metrics, M, busy_waiting=8)
    assert v.state == state and words in v.reason


@pytest.mark.parametrize(("models", "state", "words"), [
    (HttpResult(200, '{"object": "list", "data": [{"id": "gpt-4o"}, {"id": "gpt-4o-mini"}]}'),
     "up", "gpt-4o-mini available"),
    (HttpResult(200, '{"data": [{"id": "gpt-4o"}]}'), "misconfigured", "not available to this key"),
    (HttpResult(401, '{"error": {}}'), "misconfigured", "refused the API key (401)"),
    (HttpResult(403), "misconfigured", "(403)"),
    (HttpResult(500), "down", "answered 500"),
    (HttpResult(200, '{"data": [{"id": "gpt-4o-mi'), "down", "not JSON"),  # cut short
    (HttpResult(None, error="no answer within 2 s"), "down", "unreachable: no answer within 2 s"),
])
def test_judge_openai(models, state, words):
    v = judge_openai(models, "gpt-4o-mini")
    assert v.state == state and words in v.reason


def test_judge_path_and_queue_parsing():
    assert judge_path(HttpResult(None, error="no answer within 1 s")).reason.startswith(
        "GPU box unreachable over the tailnet")
    assert judge_path(HttpResult(404)).state == "up"
    text = ("# TYPE vllm:num_requests_waiting gauge\n" + METRICS % ("a", "2") + METRICS % ("b", "3"))
    assert read_metrics(text).waiting == 5 and read_metrics("nothing").waiting is None


# llama.cpp's server with --metrics: requests_processing are on a slot, requests_deferred wait.
LLAMACPP = """# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 33065
# HELP llamacpp:requests_processing Number of requests processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 4
# HELP llamacpp:requests_deferred Number of requests deferred.
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred %s
"""


@pytest.mark.parametrize(("text", "waiting"), [
    (LLAMACPP % "3", 3.0),
    (LLAMACPP % "0", 0.0),
    ("# TYPE vllm:num_requests_waiting gauge\n" + METRICS % ("a", "1e1"), 10.0),
    (LLAMACPP.split("# HELP llamacpp:requests_deferred")[0], None),   # no queue said
    ("vllm:num_requests_waiting{model_name=\"a\"} 2\nnot prometheus at all\n", None),
    ("<html>502 Bad Gateway</html>", None),
    ("", None),
])
def test_the_queue_is_read_from_vllm_and_llamacpp_metrics(text, waiting):
    assert read_metrics(text).waiting == waiting
    v = judge_replica(HttpResult(200), HttpResult(200, '{"data": [{"id": "m"}]}'),
                      HttpResult(200, text), "m", busy_waiting=2)
    assert v.waiting == waiting
    assert v.state == ("busy" if waiting is not None and waiting > 2 else "up")


def test_bad_at_once_good_only_after_rise_probes():
    t = Target("onprem.r1", "replica", "onprem", state="up")
    assert apply_verdict(t, Verdict("down", "refused"), rise=2, now=1) is True
    assert t.state == "down" and t.since == 1
    assert apply_verdict(t, Verdict("up", "ok"), rise=2, now=2) is False
    assert t.state == "down" and "recovering (1/2" in t.reason
    assert apply_verdict(t, Verdict("up", "ok"), rise=2, now=3) is True and t.state == "up"


def test_a_flapping_target_does_not_flip_the_route_each_probe():
    t = Target("onprem.r1", "replica", "onprem", state="up")
    states = []
    for i, s in enumerate(["down", "up", "down", "up", "down", "up", "up"]):
        apply_verdict(t, Verdict(s, s), rise=2, now=i)
        states.append(t.state)
    assert states == ["down"] * 6 + ["up"]


def test_backoff_doubles_for_a_down_target_up_to_the_cap():
    t = Target("x", "replica", "onprem", state="down")
    waits = []
    for failures in range(1, 7):
        t.failures = failures
        waits.append(next_probe_in(t, 2.0, 0.0, 10.0))
    assert waits == [2, 4, 8, 10, 10, 10]
    up = Target("y", "replica", "onprem", state="up")
    assert 1.6 <= next_probe_in(up, 2.0, 0.2, 10.0, rand=lambda: 0.0) <= 2.4


def test_tier_from_targets():
    path = Target("onprem.path", "path", "onprem", state="up")
    r = [Target(f"onprem.r{i}", "replica", "onprem", state="up") for i in (1, 2, 3)]
    assert tier_verdict("onprem", [path, *r]).reason == "3/3 replicas serving"
    r[1].state, r[1].reason = "down", "refused"
    v = tier_verdict("onprem", [path, *r])
    assert v.state == "up" and v.reason == "2/3 replicas serving: r2 down (refused)"
    path.state, path.reason = "down", "GPU box unreachable over the tailnet: no answer within 1 s"
    v = tier_verdict("onprem", [path, *r])
    assert v.state == "down" and "tailnet" in v.reason, "the path, not three replica failures"
    path.state = "up"
    for t in r:
        t.state, t.reason = "misconfigured", "API key (401)"
    assert tier_verdict("onprem", [path, *r]).state == "misconfigured"


def test_a_tier_nothing_watches_is_unknown_until_live_traffic_or_targets_say_more():
    from gateway.config import HealthConfig
    from gateway.health.targets import TierBook
    from gateway.tiers import ProbeTarget

    now = [0.0]
    book = TierBook(HealthConfig(), lambda: now[0], lambda event: None)
    assert book.state("cache").state == "unknown"   # asked every turn, never probed
    book.observe_failure("cache", "busy", "429", retry_after_s=5)
    assert book.state("cache").state == "busy"
    now[0] = 6.0
    assert book.state("cache").state == "unknown", "the live verdict lapsed"
    # A tier that gains targets is judged by them from then on.
    probe = ProbeTarget("static.main", "replica", lambda session, key, cfg: None)  # type: ignore
    book.add("static", (probe,), {})
    assert book.state("static") == tier_verdict("static", [Target("static.main", "replica",
                                                                  "static")])
    assert book.state("static").reason == "replicas not probed yet"


def test_a_restarted_replica_takes_traffic_once_its_probes_see_it_back_a_wedged_one_not():
    """Live traffic ejects a replica. If its probes saw it fail and come back (it was
    restarted), traffic returns as soon as the probes say up, on probation; if its probes
    never failed (wedged: it answers /health, never a chat), the ejection runs its time."""
    from gateway.config import HealthConfig
    from gateway.health.probes import Verdict
    from gateway.health.targets import TierBook
    from gateway.tiers import ProbeTarget

    now = [0.0]
    cfg = HealthConfig(eject_after=3, eject_ttl_s=10.0, rise=2)
    book = TierBook(cfg, lambda: now[0], lambda event: None)
    probes = tuple(ProbeTarget(f"onprem.{n}", "replica", lambda s, k, c: None)  # type: ignore
                   for n in ("dead", "wedged"))
    book.add("onprem", probes, {"http://dead": "onprem.dead", "http://wedged": "onprem.wedged"})
    dead, wedged = book.targets["onprem.dead"], book.targets["onprem.wedged"]
    for t in (dead, wedged):
        book.fold(t, Verdict("up", "serving"), now[0])
    for url in ("http://dead", "http://wedged"):
        for _ in range(3):
            book.observe_target_failure(url, "connection refused")
    assert not book.usable("http://dead") and not book.usable("http://wedged")
    now[0] = 1.0
    book.fold(dead, Verdict("down", "connection refused"), now[0])   # the process is gone
    book.fold(wedged, Verdict("up", "serving"), now[0])              # answers probes anyway
    now[0] = 3.0
    book.fold(dead, Verdict("up", "serving"), now[0])                # restarted: 1 of 2
    assert not book.usable("http://dead"), "one good probe is not yet up (rise 2)"
    now[0] = 5.0
    book.fold(dead, Verdict("up", "serving"), now[0])
    assert book.usable("http://dead"), "back at the probe that says up, not after 10 s"
    assert not book.usable("http://wedged"), "its probes never failed: still ejected"
    book.observe_target_failure("http://dead", "connection refused")
    assert not book.usable("http://dead"), "on probation: one failure ejects it again"
    now[0] = 10.5
    assert book.usable("http://wedged"), "the ejection ran its 10 s"


def test_a_wedged_box_is_out_as_a_box_once_every_replica_missed_a_deadline():
    """Each replica counts its own failures, so a box whose every replica hangs would make
    turn after turn wait a deadline until each reached eject_after. Once every replica has
    missed a deadline within the window, all are out at once."""
    from gateway.config import HealthConfig
    from gateway.health.targets import WEDGED_WINDOW_S, TierBook
    from gateway.tiers import ProbeTarget

    now = [0.0]
    book = TierBook(HealthConfig(eject_after=3, eject_ttl_s=10.0), lambda: now[0],
                    lambda event: None)
    probes = tuple(ProbeTarget(f"onprem.{n}", "replica", lambda s, k, c: None)  # type: ignore
                   for n in ("r1", "r2"))
    book.add("onprem", probes, {"http://r1": "onprem.r1", "http://r2": "onprem.r2"})
    book.observe_target_failure("http://r1", "no first token within 5 s")
    assert book.usable("http://r1") and book.usable("http://r2"), "one miss is one replica's"
    now[0] = WEDGED_WINDOW_S + 1   # r2 misses too, but long after
    book.observe_target_failure("http://r2", "no first token within 5 s")
    assert book.usable("http://r2"), "not together: no wedge"
    now[0] += 2
    book.observe_target_failure("http://r1", "no response headers within 2 s")
    assert not book.usable("http://r1") and not book.usable("http://r2"), "the box is out"
    assert "the box is wedged" in book.why_not("http://r2")
    assert book.state("onprem").state == "down"


def test_other_failures_of_every_replica_are_not_a_wedge():
    from gateway.config import HealthConfig
    from gateway.health.targets import TierBook
    from gateway.tiers import ProbeTarget

    book = TierBook(HealthConfig(eject_after=3), lambda: 0.0, lambda event: None)
    probes = tuple(ProbeTarget(f"onprem.{n}", "replica", lambda s, k, c: None)  # type: ignore
                   for n in ("r1", "r2"))
    book.add("onprem", probes, {"http://r1": "onprem.r1", "http://r2": "onprem.r2"})
    for url in ("http://r1", "http://r2"):
        book.observe_target_failure(url, "answered 500")
    assert book.usable("http://r1") and book.usable("http://r2")


def test_with_the_shipped_settings_a_recovered_replica_has_traffic_within_one_interval():
    """A replica down for a minute, then well: with the shipped health settings its next
    probe comes within one probe interval (no backoff past it), the first good probe puts
    it back, and it is back on probation: one live failure takes it out again."""
    from gateway.config import HealthConfig
    from gateway.health.targets import TierBook
    from gateway.tiers import ProbeTarget

    now = [0.0]
    cfg = HealthConfig()
    book = TierBook(cfg, lambda: now[0], lambda event: None)
    book.add("onprem", (ProbeTarget("onprem.r1", "replica", lambda s, k, c: None),),  # type: ignore
             {"http://r1": "onprem.r1"})
    r1 = book.targets["onprem.r1"]
    book.fold(r1, Verdict("up", "serving"), now[0])
    recovered_at = 60.0
    while r1.next_at < recovered_at:   # probed on its own schedule through the outage
        now[0] = r1.next_at
        book.fold(r1, Verdict("down", "connection refused"), now[0])
    assert not book.usable("http://r1")
    first_probe_after = r1.next_at
    assert first_probe_after - recovered_at <= cfg.interval_s * (1 + cfg.jitter)
    now[0] = first_probe_after
    book.fold(r1, Verdict("up", "serving"), now[0])
    assert book.usable("http://r1"), "the first good probe brings traffic back"
    book.observe_target_failure("http://r1", "connection reset")
    assert not book.usable("http://r1"), "on probation: one failure ejects it again"


@pytest.mark.parametrize(("text", "usage"), [
    ('vllm:kv_cache_usage_perc{model_name="a"} 0.42\n', 0.42),   # vLLM 0.10 on
    ('# TYPE vllm:gpu_cache_usage_perc gauge\nvllm:gpu_cache_usage_perc{model_name="a"} 0.9\n'
     'vllm:gpu_cache_usage_perc{model_name="b"} 0.2\n', 0.9),     # before: the fullest model
    ("# TYPE llamacpp:kv_cache_usage_ratio gauge\nllamacpp:kv_cache_usage_ratio 0.75\n", 0.75),
    ('vllm:kv_cache_usage_perc{model_name="a"} 1.5\n', 1.0),     # never past full
    (LLAMACPP % "1", None),                                        # not said
    ("vllm:kv_cache_usage_perc 0.5\nbroken {\n", None),          # not Prometheus text
])
def test_the_kv_cache_usage_is_read_where_the_replica_reports_it(text, usage):
    assert read_metrics(text).cache_usage == usage
    v = judge_replica(HttpResult(200), HttpResult(200, '{"data": [{"id": "m"}]}'),
                      HttpResult(200, text), "m", busy_waiting=2)
    assert v.cache_usage == usage


def test_a_follower_gateway_reads_the_replicas_queue_and_cache_the_monitor_published():
    """One gateway probes; the others adopt its snapshot, load readings included, so their
    load bound and KV-cache check see what the probes saw."""
    from dataclasses import asdict

    from gateway.config import HealthConfig
    from gateway.health.targets import TierBook
    from gateway.tiers import ProbeTarget

    def book() -> TierBook:
        b = TierBook(HealthConfig(), lambda: 0.0, lambda event: None)
        b.add("onprem", (ProbeTarget("onprem.r1", "replica", lambda s, k, c: None),),  # type: ignore
              {"http://r1": "onprem.r1"})
        return b

    leader, follower = book(), book()
    apply_verdict(leader.targets["onprem.r1"], Verdict("up", "serving m", 3.0, waiting=5.0,
                                                       cache_usage=0.93), rise=1, now=0)
    # What the leader writes to Redis (HealthMonitor.tick), read back.
    published = orjson.loads(orjson.dumps([asdict(t) for t in leader.targets.values()]))
    follower.adopt({t["name"]: t for t in published})
    assert follower.waiting("http://r1") == 5.0
    assert follower.cache_usage("http://r1") == 0.93
    older = [{k: v for k, v in t.items() if k not in ("waiting", "cache_usage")} for t in published]
    follower.adopt({t["name"]: t for t in older})
    assert follower.waiting("http://r1") == 0.0 and follower.cache_usage("http://r1") is None


def held_book(now: list[float]):
    """A book with one replica, r1, probed at the times in `now`."""
    from gateway.config import HealthConfig
    from gateway.health.targets import TierBook
    from gateway.tiers import ProbeTarget

    b = TierBook(HealthConfig(), lambda: now[0], lambda event: None, hold_s=5.0)
    b.add("onprem", (ProbeTarget("onprem.r1", "replica", lambda s, k, c: None),),  # type: ignore
          {"http://r1": "onprem.r1"})
    return b


def held_verdicts():
    """A probe whose /v1/models timed out, one whose connection was refused, and a good one."""
    from gateway.health.probes import HttpResult, judge_replica

    timed_out = judge_replica(HttpResult(404), HttpResult(None, error="no answer within 1 s",
                                                          timed_out=True), None, "m", 0)
    refused = judge_replica(HttpResult(None, error="connection refused"), None, None, "m", 0)
    return timed_out, refused, Verdict("up", "serving m")


def test_a_replica_whose_probe_waits_behind_our_answer_is_busy_not_down():
    """llama-cpp-python answers one request at a time: a probe sent while it answers one of
    our turns times out behind it. That replica is busy (and still takes turns), not down;
    a timeout with no turn of ours there, or a refused connection, is still down, and so is
    the next timeout once the turn is over."""
    now = [0.0]
    timed_out, refused, up = held_verdicts()
    assert timed_out.state == "down" and timed_out.timed_out and not refused.timed_out
    b = held_book(now)
    r1 = b.targets["onprem.r1"]
    b.fold(r1, up, now[0])
    b.fold(r1, timed_out, now[0])
    assert r1.state == "down", "no turn of ours there: a timeout is a timeout"
    b.fold(r1, up, now[0])
    b.fold(r1, up, now[0])   # rise 2

    b.turn_started("http://r1")
    now[0] = 1.0
    b.fold(r1, timed_out, started=0.5)
    assert r1.state == "busy" and "answering 1 turn of ours" in r1.reason, r1.reason
    assert b.usable("http://r1") and b.state("onprem").state == "busy"
    b.fold(r1, refused, started=1.0)
    assert r1.state == "down", "a refused connection is not an answer holding the probe"
    b.fold(r1, up, now[0])
    b.fold(r1, up, now[0])
    now[0] = 2.0
    b.turn_ended("http://r1")    # the answer ends while the next probe waits for it
    b.fold(r1, timed_out, started=1.5)
    assert r1.state == "busy", "the probe was sent while the turn was still answered"
    now[0] = 4.0
    b.fold(r1, timed_out, started=3.0)
    assert r1.state == "down", "sent after the last turn ended: nothing held it"


def test_a_frozen_replica_is_down_however_many_turns_are_sent_to_it():
    """Turns keep going to it, but nothing has come back for longer than a turn may stay
    silent (hold_s): a timeout is down again, turns in flight or not."""
    now = [4.0]
    timed_out, _, up = held_verdicts()
    b = held_book(now)
    r1 = b.targets["onprem.r1"]
    b.fold(r1, up, now[0])
    b.turn_started("http://r1")
    now[0] = 8.0
    b.fold(r1, timed_out, started=7.5)
    assert r1.state == "busy", "the last good probe was 4 s ago"
    b.turn_ended("http://r1")
    b.turn_started("http://r1")   # the next customer's turn, sent to it
    now[0] = 9.5
    b.fold(r1, timed_out, started=9.0)
    assert r1.state == "down", "5.5 s without a sign of life"
    b.turn_moved("http://r1")     # a part of an answer after all: it is alive
    b.fold(r1, timed_out, started=9.4)
    b.fold(r1, timed_out, started=9.4)   # rise 2, busy being a serving state
    assert r1.state == "busy"


def test_a_follower_reads_the_leaders_timeout_by_its_own_turns():
    """The leader saw a timeout with no turn of its own there; a follower whose own turn is
    answered there reads it as busy, once that turn has shown life."""
    from dataclasses import asdict

    now = [0.0]
    timed_out, _, _ = held_verdicts()
    leader, follower = held_book(now), held_book(now)
    apply_verdict(leader.targets["onprem.r1"], timed_out, rise=1, now=0)
    published = {t["name"]: t for t in orjson.loads(orjson.dumps(
        [asdict(t) for t in leader.targets.values()]))}
    follower.adopt(published)
    assert follower.targets["onprem.r1"].state == "down"
    follower.turn_started("http://r1")
    follower.adopt(published)
    assert follower.targets["onprem.r1"].state == "down", "its turn has shown nothing yet"
    follower.turn_moved("http://r1")
    follower.adopt(published)
    assert follower.targets["onprem.r1"].state == "busy"
    assert follower.usable("http://r1")
