"""The tools ops already run: Debian's Prometheus and promtool on the shipped rule file, a
real Prometheus scraping a gateway, and the Grafana board checked against what the gateway
really exports."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time

import aiohttp
import yaml

from gateway.app import create_app
from tests.conftest import AUTH, OTHER_KEY, ROOT, STAFF, STAFF_KEY, make_settings
from tests.servers import free_port, need_binary, stopped

RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "scout.json"


def test_promtool_checks_and_unit_tests_every_alert():
    promtool = need_binary("promtool", "prometheus")
    check = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0 and "SUCCESS: 7 rules found" in check.stdout, check.stderr
    unit = subprocess.run([promtool, "test", "rules", "alerts.test.yml"], cwd=RULES.parent,
                          capture_output=True, text=True, timeout=60)
    assert unit.returncode == 0 and "SUCCESS" in unit.stdout, unit.stdout + unit.stderr
    tested = set(re.findall(r"alertname: (\w+)", (RULES.parent / "alerts.test.yml").read_text()))
    defined = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    assert defined == tested == {
        "ScoutOnpremDown", "ScoutOpenAIMisconfigured", "ScoutFallbackRateHigh", "ScoutTTFTHigh",
        "ScoutRedisDown", "ScoutKeyRotationDue", "ScoutHedgeBudgetExhausted"}


async def scrape(client) -> str:
    return await (await client.get("/metrics", headers=STAFF)).text()


def families(text: str) -> set[str]:
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


async def test_metrics_carry_process_build_spend_per_key_and_no_created_series(
        gw_client, settings, onprem_sim, openai_sim):
    client = await gw_client(create_app(settings))
    for i in range(2):
        await client.post("/api/chat", json={"message": f"recommend a hybrid {i}"})
    await client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {OTHER_KEY}"},
                      json={"model": "scout/openai",
                            "messages": [{"role": "user", "content": "recommend an SUV"}]})
    text = await scrape(client)
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                 "process_open_fds", "python_info"):
        assert f"\n{name}" in text, name
    assert re.search(r'scout_build_info\{commit="[0-9a-f]{7,12}|unknown",version="0\.1\.0"\} 1',
                     text)
    assert "_created" not in text
    assert 'scout_key_requests_total{key="vercel"} 2.0' in text
    assert 'scout_key_requests_total{key="mobile"} 1.0' in text
    assert re.search(r'scout_key_spend_usd_total\{key="mobile"\} [1-9]', text)
    assert re.search(r"scout_cost_saved_usd_total [0-9.e-]+", text)
    assert "scout_store_up 1.0" in text
    # Bounded labels: no user ids, no free text.
    for line in text.splitlines():
        if line.startswith("scout_") and "{" in line:
            assert "reason=\"" not in line or re.search(
                r'reason="(failed|hedge|stalled|dropped|headers_deadline|skipped)"', line), line


async def test_a_real_prometheus_scrapes_the_gateway_and_answers_promql(
        tmp_path, aiohttp_server, onprem_sim, openai_sim):
    prometheus = need_binary("prometheus", "prometheus")
    server = await aiohttp_server(create_app(make_settings([onprem_sim.url],
                                                           f"{openai_sim.url}/v1")))
    token = tmp_path / "token"
    token.write_text(STAFF_KEY)
    shutil.copy(RULES, tmp_path / "alerts.yml")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "alerts.yml")],
        "scrape_configs": [{"job_name": "scout", "metrics_path": "/metrics",
                            "authorization": {"type": "Bearer",
                                              "credentials_file": str(token)},
                            "static_configs": [{"targets": [f"127.0.0.1:{server.port}"]}]}]}))
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    api = f"http://127.0.0.1:{port}/api/v1"

    async def query(s: aiohttp.ClientSession, promql: str) -> list[dict]:
        async with s.get(f"{api}/query", params={"query": promql}) as r:
            body = await r.json()
        assert body["status"] == "success", body
        return body["data"]["result"]

    try:
        async with aiohttp.ClientSession(headers=AUTH) as s:
            base = f"http://127.0.0.1:{server.port}"
            # One answer, then wait until Prometheus has scraped it: the rates below need
            # the counters seen before the scripted run moves them.
            await (await s.post(f"{base}/api/chat", json={"message": "recommend a sedan"})).read()
            await (await s.post(f"{base}/v1/chat/completions", json={
                "model": "scout/openai",
                "messages": [{"role": "user", "content": "recommend a wagon"}]})).read()
            deadline = time.monotonic() + 60
            while True:
                try:
                    if len(await query(s, 'scout_requests_total{job="scout"}')) == 2:
                        break
                except (aiohttp.ClientError, AssertionError):
                    pass
                assert time.monotonic() < deadline, "Prometheus never scraped the gateway"
                await asyncio.sleep(0.2)
            for i in range(6):   # on-prem answers
                await (await s.post(f"{base}/api/chat",
                                    json={"message": f"recommend a hybrid {i}"})).read()
            await onprem_sim.set_fault("http_500")
            for i in range(4):   # OpenAI answers
                await (await s.post(f"{base}/api/chat",
                                    json={"message": f"recommend a truck {i}"})).read()
            deadline = time.monotonic() + 60
            while True:
                try:
                    per_tier = {r["metric"]["tier"]: float(r["value"][1]) for r in await query(
                        s, 'sum by (tier) (scout_requests_total{job="scout"})')}
                except (aiohttp.ClientError, AssertionError):
                    per_tier = {}
                if per_tier == {"onprem": 7.0, "openai": 5.0}:
                    break
                assert time.monotonic() < deadline, f"Prometheus saw {per_tier}"
                await asyncio.sleep(0.2)
            rates = {r["metric"]["tier"]: float(r["value"][1]) for r in await query(
                s, 'sum by (tier) (increase(scout_requests_total[1m]))')}
            assert rates["openai"] > 0 and rates["onprem"] > 0, rates
            async with s.get(f"{api}/rules") as r:
                loaded = {rule["name"] for g in (await r.json())["data"]["groups"]
                          for rule in g["rules"]}
            assert "ScoutOnpremDown" in loaded and len(loaded) == 7
            assert (await query(s, 'up{job="scout"}'))[0]["value"][1] == "1"
    finally:
        await stopped(proc, 30, "Prometheus")


async def test_the_grafana_board_uses_only_exported_metrics_and_a_datasource_variable(
        gw_client, settings, onprem_sim, openai_sim):
    board = json.loads(DASHBOARD.read_text())
    assert board["templating"]["list"][0]["type"] == "datasource"
    client = await gw_client(create_app(settings))
    await client.post("/api/chat", json={"message": "recommend a hybrid"})
    exported = families(await scrape(client))
    exported |= {f"{n}_total" for n in exported} | {f"{n}_bucket" for n in exported}
    used: set[str] = set()
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            used |= set(re.findall(r"\b((?:scout|process|python)_[a-z_]+)", target["expr"]))
    assert used, "the board queries something"
    missing = {m for m in used if m not in exported}
    assert not missing, f"the board queries metrics the gateway doesn't export: {missing}"
    assert any("key_spend" in t["expr"] for p in board["panels"] for t in p["targets"])
    assert sum(p["type"] == "heatmap" for p in board["panels"]) >= 2, "TTFT heatmaps per tier"


def test_the_monitoring_profile_provisions_both(tmp_path):
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    mounts = " ".join(compose["prometheus"]["volumes"] + compose["grafana"]["volumes"])
    for path in ("deploy/prometheus/prometheus.yml", "deploy/prometheus/alerts.yml",
                 "deploy/grafana/provisioning", "deploy/grafana/scout.json"):
        assert f"./{path}" in mounts and (ROOT / path).exists(), path
    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    assert prom["rule_files"] == ["/etc/prometheus/alerts.yml"]
    assert prom["scrape_configs"][0]["authorization"]["credentials_file"].startswith("/run/secrets")
    promtool = shutil.which("promtool")
    if promtool:   # the config itself, with the secret path made local
        local = tmp_path / "prometheus.yml"
        prom["rule_files"] = [str(RULES)]
        (tmp_path / "token").write_text("t")
        prom["scrape_configs"][0]["authorization"]["credentials_file"] = str(tmp_path / "token")
        local.write_text(yaml.safe_dump(prom))
        out = subprocess.run([promtool, "check", "config", str(local)], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr

