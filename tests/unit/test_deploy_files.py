"""Static checks of the deployment files: compose, nginx renders, Tailscale policy, EC2 files."""

from __future__ import annotations

import re
from pathlib import Path

import json5
import pytest
import yaml

from onprem.nginx_conf import render_edge, render_onprem

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
SECRETISH = re.compile(r"(KEY|TOKEN|PASSWORD|SECRET|AUTH)", re.I)


def profile(name: str) -> dict:
    return {n: s for n, s in SERVICES.items() if name in s.get("profiles", [])}


def test_profiles_hold_the_right_services():
    assert set(profile("gpu")) == {"vllm-1", "vllm-2", "vllm-3", "tailscale-gpu", "onprem-nginx"}
    assert set(profile("gpu-llamacpp")) == {"llamacpp-1", "llamacpp-2", "llamacpp-3",
                                            "tailscale-gpu", "onprem-nginx"}
    assert set(profile("ec2")) == {"tailscale-ec2", "gateway", "redis", "edge-nginx"}
    assert set(profile("monitoring")) == {"prometheus", "grafana"}
    assert all(s.get("profiles") for s in SERVICES.values()), "nothing starts by accident"


@pytest.mark.parametrize("name", ["vllm-1", "vllm-2", "vllm-3", "llamacpp-1", "llamacpp-2",
                                  "llamacpp-3"])
def test_each_replica_has_its_gpu_a_healthcheck_a_key_from_env_and_an_alias(name):
    s = SERVICES[name]
    devices = s["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
    assert s["healthcheck"]["start_period"]
    cmd = " ".join(s["command"])
    assert "--api-key=${ONPREM_API_KEY:?" in cmd
    assert ("--served-model-name=llama-3.1-70b-instruct" in cmd
            or "--alias=llama-3.1-70b-instruct" in cmd)
    assert s["networks"]["default"]["aliases"][0].startswith("replica-")
    if name.startswith("vllm"):
        assert s["ipc"] == "host" and s["shm_size"]
        assert "model-cache:/root/.cache/huggingface" in s["volumes"]
        assert "--quantization=awq_marlin" in cmd


def test_each_gpu_is_used_once():
    for prefix in ("vllm", "llamacpp"):
        ids = [SERVICES[f"{prefix}-{i}"]["deploy"]["resources"]["reservations"]["devices"][0]
               ["device_ids"][0] for i in (1, 2, 3)]
        assert sorted(ids) == ["0", "1", "2"]


def test_only_the_tailnet_reaches_the_gpu_box():
    nginx = SERVICES["onprem-nginx"]
    assert nginx["network_mode"] == "service:tailscale-gpu" and "ports" not in nginx
    for name, s in profile("gpu").items():
        assert "ports" not in s, f"{name} publishes a port"
    ts = SERVICES["tailscale-gpu"]
    assert ts["environment"]["TS_EXTRA_ARGS"] == "--advertise-tags=tag:gpu"
    assert ts["environment"]["TS_AUTHKEY"].startswith("${TS_AUTHKEY_GPU:?")
    assert "tailscale-gpu-state:/var/lib/tailscale" in ts["volumes"]


def test_ec2_box():
    gw, redis, edge = SERVICES["gateway"], SERVICES["redis"], SERVICES["edge-nginx"]
    assert gw["build"] == "." and gw["healthcheck"] and gw["network_mode"] == "service:tailscale-ec2"
    assert gw["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "--appendonly" in redis["command"][-1] and "redis-data:/data" in redis["volumes"]
    assert edge["ports"] == ["80:80", "443:443"]
    assert SERVICES["tailscale-ec2"]["environment"]["TS_EXTRA_ARGS"] == \
        "--advertise-tags=tag:gateway"


def _strings(node, path=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _strings(v, f"{path}[{i}]")
    elif isinstance(node, str):
        yield path, node


def test_each_service_gets_only_its_own_secrets():
    assert not [n for n, svc in SERVICES.items() if "env_file" in svc], "env_file hands out all"
    gw, redis = SERVICES["gateway"], SERVICES["redis"]
    assert set(gw["secrets"]) == {"onprem_api_key", "openai_api_key", "redis_url",
                                  "scout_api_keys", "scout_staff_keys", "scout_signing_secret",
                                  "scout_alert_webhook"}
    for name, path in gw["environment"].items():  # the gateway reads NAME from NAME_FILE
        if name.endswith("_FILE"):
            assert path == f"/run/secrets/{path.rsplit('/', 1)[1]}"
            assert path.rsplit("/", 1)[1] in gw["secrets"]
    assert redis["secrets"] == ["redis_password"]
    assert "requirepass" not in " ".join(redis["command"]).split("printf")[0]
    assert "--requirepass" not in " ".join(redis["command"])
    assert SERVICES["prometheus"]["secrets"] == ["scout_metrics_token"]
    assert SERVICES["grafana"]["secrets"] == ["grafana_admin_password"]
    for name, svc in SERVICES.items():
        if name not in ("gateway", "redis", "prometheus", "grafana"):
            assert "secrets" not in svc, f"{name} gets secrets it does not use"
    for secret in COMPOSE["secrets"].values():
        assert secret["file"].startswith("./secrets/")
    assert "secrets/" in (ROOT / ".gitignore").read_text().split()


def test_orchestrators_probe_readiness_not_upstream_health():
    assert "/readyz" in " ".join(SERVICES["gateway"]["healthcheck"]["test"])
    assert "/readyz" in (ROOT / "Dockerfile").read_text().split("HEALTHCHECK", 1)[1]
    assert "--wait" in (ROOT / "infra" / "ec2" / "scout.service").read_text()


def test_the_gateway_trusts_exactly_the_edge_nginx():
    import ipaddress
    subnet = ipaddress.ip_network(COMPOSE["networks"]["default"]["ipam"]["config"][0]["subnet"])
    edge_ip = SERVICES["edge-nginx"]["networks"]["default"]["ipv4_address"]
    assert ipaddress.ip_address(edge_ip) in subnet
    config = yaml.safe_load((ROOT / "config" / "scout.yaml").read_text())
    assert edge_ip in config["server"]["trusted_proxies"]
    assert not any("/" in t for t in config["server"]["trusted_proxies"]), "no whole subnets"
    conf = (ROOT / "nginx" / "edge.conf").read_text()
    assert "$proxy_add_x_forwarded_for" not in conf, "appending keeps what the client wrote"
    assert conf.count("proxy_set_header X-Forwarded-For $remote_addr;") == 2


def test_the_edge_config_speaks_the_pinned_nginxs_http2_syntax():
    pinned = SERVICES["edge-nginx"]["image"].split(":")[1].split("-")[0]
    conf = (ROOT / "nginx" / "edge.conf").read_text()
    assert tuple(int(x) for x in pinned.split(".")) >= (1, 25, 1)
    assert "http2 on;" in conf and "ssl http2" not in conf


def test_no_secret_is_written_inline():
    for where, value in _strings(SERVICES):
        name = where.rsplit(".", 1)[-1]
        if SECRETISH.search(name) and "healthcheck" not in where \
                and not name.startswith("secrets["):  # names of compose secrets, not values
            assert value.startswith("${") or (name.endswith("_FILE") and value.startswith(
                "/run/secrets/")), f"{where} holds a literal secret"
        m = re.search(r"--(api-key|requirepass)[= ]+(\S+)", value)
        if m:
            assert m.group(2).startswith("${"), where
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_every_variable_the_compose_file_uses_is_documented():
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", (ROOT / "docker-compose.yml").read_text()))
    documented = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M))
    assert used - {"SCOUT_VERSION"} <= documented, used - documented


def test_images_are_pinned():
    for name, s in SERVICES.items():
        if "image" in s and "build" not in s:
            image = s["image"]
            assert ":" in image and not image.endswith(":latest"), f"{name}: {image}"
            assert re.search(r":[a-z-]*v?\d", image), f"{name}: {image} has no version"


def test_committed_nginx_configs_are_the_renders():
    onprem = render_onprem([(f"replica-{i}", f"replica-{i}:8000") for i in (1, 2, 3)], "8000")
    assert (ROOT / "nginx" / "onprem.conf").read_text() == onprem
    edge = render_edge("tailscale-ec2:8080", "scout.example.com")
    assert (ROOT / "nginx" / "edge.conf").read_text() == edge


def test_onprem_nginx_never_replays_a_post_and_never_buffers():
    conf = (ROOT / "nginx" / "onprem.conf").read_text()
    assert "least_conn;" in conf and "proxy_buffering off;" in conf
    assert "proxy_next_upstream error timeout;" in conf and "non_idempotent" not in \
        conf.split("proxy_next_upstream error timeout;")[1].split("\n")[0]
    assert 'proxy_set_header Connection "";' in conf and "proxy_http_version 1.1;" in conf
    assert "max_fails=2 fail_timeout=10s" in conf
    for path in ("health", "v1/models", "metrics"):
        assert f"location = /replicas/replica-2/{path}" in conf


def _allowed(grants: list[dict], src: str, dst: str) -> bool:
    tag, port = dst.rsplit(":", 1)
    for g in grants:
        if src in g["src"] and tag in g["dst"]:
            for rule in g["ip"]:
                proto, _, ports = rule.partition(":")
                if proto == "tcp" and (ports == "*" or port in ports.split(",")):
                    return True
    return False


def test_tailscale_policy_parses_and_its_tests_hold_and_cover_the_grant():
    policy = json5.loads((ROOT / "infra" / "tailscale" / "policy.hujson").read_text())
    grants = policy["grants"]
    assert grants == [{"src": ["tag:gateway"], "dst": ["tag:gpu"], "ip": ["tcp:8000"]}]
    assert set(policy["tagOwners"]) == {"tag:gateway", "tag:gpu"}
    assert "acls" not in policy, "grants only: nothing else is allowed"
    accepted = set()
    for t in policy["tests"]:
        for dst in t.get("accept", []):
            assert _allowed(grants, t["src"], dst), f"{t['src']} → {dst} should be accepted"
            accepted.add((t["src"], dst))
        for dst in t.get("deny", []):
            assert not _allowed(grants, t["src"], dst), f"{t['src']} → {dst} should be denied"
    for g in grants:
        for src in g["src"]:
            for dst in g["dst"]:
                for rule in g["ip"]:
                    assert (src, f"{dst}:{rule.split(':')[1]}") in accepted, "grant not tested"


def test_cloud_init_and_the_unit():
    text = (ROOT / "infra" / "ec2" / "cloud-init.yaml").read_text()
    assert text.startswith("#cloud-config\n")
    ci = yaml.safe_load(text)
    run = "\n".join(c if isinstance(c, str) else " ".join(c) for c in ci["runcmd"])
    assert "docker-ce" in run and "docker-compose-plugin" in run and "tailscale" in run
    assert "systemctl enable --now scout.service" in run
    writer = next(f for f in ci["write_files"] if f["path"] == "/usr/local/sbin/scout-write-env")
    assert "--with-decryption" in writer["content"] and "umask 077" in writer["content"]
    unit = (ROOT / "infra" / "ec2" / "scout.service").read_text()
    assert "ExecStartPre=/usr/local/sbin/scout-write-env" in unit
    assert "docker compose --profile ec2 up -d" in unit and "WantedBy=multi-user.target" in unit


def test_dockerfile_is_slim_non_root_and_health_checked():
    text = (ROOT / "Dockerfile").read_text()
    bases = [line.split()[1] for line in text.splitlines() if line.startswith("FROM ")]
    # Both stages on one Python: the packages built in the first are the second's.
    assert bases == ["python:3.13-slim", "python:3.13-slim"], bases
    assert "USER scout" in text and "HEALTHCHECK" in text
    assert text.index("USER scout") < text.index("CMD [")


def test_cloud_init_passes_debians_schema_check():
    import shutil
    import subprocess

    from tests.servers import need_binary
    need_binary("cloud-init", "cloud-init")
    result = subprocess.run([shutil.which("cloud-init") or "cloud-init", "schema", "--config-file",
                             str(ROOT / "infra" / "ec2" / "cloud-init.yaml")],
                            capture_output=True, text=True, timeout=60)
    # Debian 12's cloud-init says "Valid cloud-config", Debian 13's "Valid schema".
    assert result.returncode == 0 and ("Valid cloud-config" in result.stdout
                                       or "Valid schema" in result.stdout), result.stderr


def test_the_deploy_guides_render_commands_run_and_nginx_accepts_the_output(tmp_path):
    """Every `python -m onprem.nginx_conf ...` in docs/deploy.md and the rendered files'
    headers, run as written (output to a temp file), then `nginx -t` on the result."""
    import shlex
    import subprocess
    import sys

    from tests.servers import Nginx, need_binary
    need_binary("nginx", "nginx")
    texts = [(ROOT / "docs" / "deploy.md").read_text(),
             (ROOT / "nginx" / "edge.conf").read_text(),
             (ROOT / "nginx" / "onprem.conf").read_text()]
    commands = {m.strip().rstrip(".`") for t in texts
                for m in re.findall(r"python -m onprem\.nginx_conf [^`\n]+", t)}
    assert any(" onprem " in c for c in commands) and any(" edge " in c for c in commands)
    for i, cmd in enumerate(sorted(commands)):
        args = shlex.split(cmd.split(">")[0])[1:]   # the output goes to a temp file instead
        if "edge" in args:   # a cert that exists here, and the nginx installed here
            cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                            "-days", "1", "-subj", "/CN=t", "-keyout", str(key), "-out",
                            str(cert)], check=True, capture_output=True, timeout=60)
            version = subprocess.run([need_binary("nginx", "nginx"), "-v"],
                                     capture_output=True, text=True).stderr.split("/")[-1]
            args += ["--cert", str(cert), "--key", str(key), "--nginx-version", version.strip()]
        out = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                             cwd=ROOT, timeout=60)
        assert out.returncode == 0, (cmd, out.stderr)
        conf = out.stdout.replace("replica-1:8000", "127.0.0.1:18001").replace(
            "replica-2:8000", "127.0.0.1:18002").replace("replica-3:8000", "127.0.0.1:18003")
        conf = re.sub(r"server (gateway|tailscale-ec2):8080", "server 127.0.0.1:8080", conf)
        result = Nginx(tmp_path / f"n{i}", conf).test()
        assert result.returncode == 0, (cmd, result.stderr)
