"""Render nginx/onprem.conf and nginx/edge.conf from their templates.

    python -m onprem.nginx_conf onprem --listen 8000 --replica replica-1=replica-1:8000 ...
    python -m onprem.nginx_conf edge --gateway gateway:8080 --server-name scout.example.com \
        [--nginx-version 1.27.3]

The replica list is the only thing that changes from box to box, so it is
rendered rather than hand-edited; tests render the same files with local
addresses and run them in a real nginx.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parents[1] / "nginx"
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_ADDR = re.compile(r"^[A-Za-z0-9_.-]+:\d{1,5}$")


def parse_replica(text: str) -> tuple[str, str]:
    name, sep, addr = text.partition("=")
    if not sep or not _NAME.match(name) or not _ADDR.match(addr):
        raise ValueError(f"--replica takes NAME=HOST:PORT, got {text!r}")
    return name, addr


def render_onprem(replicas: list[tuple[str, str]], listen: str = "8000",
                  template: Path = TEMPLATES / "onprem.conf.template") -> str:
    if not replicas:
        raise ValueError("at least one --replica is needed")
    balanced = "\n".join(f"        server {addr} max_fails=2 fail_timeout=10s;"
                         for _, addr in replicas)
    upstreams = "\n".join(f"    upstream replica_{name.replace('-', '_')} {{\n"
                          f"        server {addr};\n        keepalive 32;\n    }}"
                          for name, addr in replicas)
    locations = []
    for name, _ in replicas:
        up = f"replica_{name.replace('-', '_')}"
        # The gateway's conversation affinity: a turn sent to the replica holding its
        # history. Streamed like /v1/, never retried elsewhere (that is the gateway's call).
        locations.append(
            f"        location = /replicas/{name}/v1/chat/completions {{\n"
            f"            proxy_pass http://{up}/v1/chat/completions;\n"
            f"            proxy_http_version 1.1;\n"
            f'            proxy_set_header Connection "";\n'
            f"            proxy_set_header Host $host;\n"
            f"            proxy_buffering off;\n"
            f"            proxy_request_buffering off;\n"
            f"            proxy_cache off;\n"
            f"            proxy_connect_timeout 2s;\n"
            f"            proxy_send_timeout 60s;\n"
            f"            proxy_read_timeout 300s;\n"
            f"            proxy_next_upstream off;\n"
            f"            add_header X-Scout-Replica {name} always;\n"
            f"        }}")
        for path in ("health", "v1/models", "metrics"):
            locations.append(
                f"        location = /replicas/{name}/{path} {{\n"
                f"            proxy_pass http://{up}/{path};\n"
                f"            proxy_http_version 1.1;\n"
                f'            proxy_set_header Connection "";\n'
                f"            proxy_connect_timeout 1s;\n"
                f"            proxy_read_timeout 2s;\n"
                f"            proxy_next_upstream off;\n"
                f"        }}")
    return (template.read_text()
            .replace("{{balanced_servers}}", balanced)
            .replace("{{replica_upstreams}}", upstreams)
            .replace("{{replica_locations}}", "\n".join(locations))
            .replace("{{listen}}", listen))


# nginx 1.25.1 moved HTTP/2 from the listen line to its own directive (and deprecated the
# old form); the compose file pins 1.27, Debian 12 ships 1.22.
HTTP2_DIRECTIVE_SINCE = (1, 25, 1)


def nginx_version(text: str) -> tuple[int, ...]:
    """`1.27.3` (or `nginx version: nginx/1.22.1`) as a tuple."""
    found = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    if not found:
        raise ValueError(f"--nginx-version takes a version like 1.27.3, got {text!r}")
    return tuple(int(x) for x in found.groups())


def render_edge(gateway: str, server_name: str = "_", cert: str = "/etc/nginx/certs/fullchain.pem",
                key: str = "/etc/nginx/certs/privkey.pem", http_port: str = "80",
                https_port: str = "443", template: Path = TEMPLATES / "edge.conf.template",
                nginx: tuple[int, ...] = (1, 27, 3)) -> str:
    if not _ADDR.match(gateway):
        raise ValueError(f"--gateway takes HOST:PORT, got {gateway!r}")
    if nginx >= HTTP2_DIRECTIVE_SINCE:
        listen = f"listen {https_port} ssl;\n        http2 on;"
    else:
        listen = f"listen {https_port} ssl http2;"
    return (template.read_text().replace("{{gateway}}", gateway)
            .replace("{{https_listen}}", listen)
            .replace("{{server_name}}", server_name).replace("{{cert}}", cert)
            .replace("{{key}}", key).replace("{{http_port}}", http_port)
            .replace("{{https_port}}", https_port))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="which", required=True)
    o = sub.add_parser("onprem")
    o.add_argument("--listen", default="8000")
    o.add_argument("--replica", action="append", default=[], help="NAME=HOST:PORT")
    e = sub.add_parser("edge")
    e.add_argument("--gateway", required=True)
    e.add_argument("--server-name", default="_")
    e.add_argument("--cert", default="/etc/nginx/certs/fullchain.pem")
    e.add_argument("--key", default="/etc/nginx/certs/privkey.pem")
    e.add_argument("--http-port", default="80")
    e.add_argument("--https-port", default="443")
    e.add_argument("--nginx-version", default="1.27.3",
                   help="the nginx that will run it (HTTP/2 syntax differs before 1.25.1)")
    args = ap.parse_args(argv)
    try:
        if args.which == "onprem":
            out = render_onprem([parse_replica(r) for r in args.replica], args.listen)
        else:
            out = render_edge(args.gateway, args.server_name, args.cert, args.key,
                              args.http_port, args.https_port,
                              nginx=nginx_version(args.nginx_version))
    except ValueError as exc:
        ap.error(str(exc))
    sys.stdout.write(out)


if __name__ == "__main__":
    main()
