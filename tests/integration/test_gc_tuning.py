"""By the time the gateway listens, what it built at startup is frozen out of the cycle
collector's sight and the collector's youngest pass waits for `server.gc_threshold` net
allocations. Run in a process of its own: the collector's settings are the whole
process's."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

from tests.conftest import API_KEY, ONPREM_KEY, ROOT, SIGNING_SECRET, example_config
from tests.servers import free_port

SERVE = """
import gc, json, os, signal, sys
from gateway.server import run, run_server
from gateway.app import create_app
from gateway.config import load_settings

def ready():
    print(json.dumps({"threshold": gc.get_threshold(), "frozen": gc.get_freeze_count(),
                      "young": gc.get_count()[0]}), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)   # and so the server drains and returns

run(run_server(create_app(load_settings(sys.argv[1])), "127.0.0.1", int(sys.argv[2]), ready))
"""


def serve_once(tmp_path, server: dict[str, object]) -> dict[str, object]:
    data = example_config()
    data["server"].update(server)
    data["openai"]["enabled"] = False
    data["websocket"] = {**data.get("websocket", {}), "drain_s": 0.1}
    cfg = tmp_path / "scout.yaml"
    cfg.write_text(yaml.safe_dump(data))
    env = {**os.environ, "ONPREM_API_KEY": ONPREM_KEY, "SCOUT_API_KEYS": f"vercel:{API_KEY}",
           "SCOUT_SIGNING_SECRET": SIGNING_SECRET, "SCOUT_LOG_LEVEL": "WARNING"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    out = subprocess.run([sys.executable, "-c", SERVE, str(cfg), str(free_port())], env=env,
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_serving_freezes_what_startup_built_and_collects_young_objects_less_often(tmp_path):
    seen = serve_once(tmp_path, {"gc_threshold": 23456})
    assert seen["threshold"] == [23456, 10, 10]
    # The app, its config, routes, compiled patterns and the inventory: tens of thousands
    # of objects no pass walks again.
    assert seen["frozen"] > 10_000
    assert seen["young"] < 1_000, "collected once before freezing: nothing young is left over"


def test_the_default_threshold_is_the_documented_one(tmp_path):
    seen = serve_once(tmp_path, {})
    assert seen["threshold"] == [10_000, 10, 10]
