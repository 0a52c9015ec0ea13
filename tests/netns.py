"""A network namespace joined to this host by a veth pair: a second machine on a real link.

Needs root and network namespaces; `netns_or_skip` skips with the reason where the
machine forbids them (and fails under CI, where they are expected).
"""

from __future__ import annotations

import os
import secrets
import subprocess

import pytest


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=30)


def netns_or_skip() -> None:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    name = f"scout-probe-{secrets.token_hex(3)}"
    probe = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"this machine forbids network namespaces: {probe.stderr.strip()}")
    sh("ip", "netns", "del", name)


class Namespace:
    """`host_addr` on this side of the link, `ns_addr` inside the namespace (same subnet)."""

    def __init__(self, prefix: str, host_addr: str, ns_addr: str, plen: int = 24) -> None:
        self.ns = f"{prefix}-{secrets.token_hex(3)}"
        self.host_if = f"sc{secrets.token_hex(3)}h"
        self.ns_if = self.host_if[:-1] + "g"
        self.host_addr, self.ns_addr, self.plen = host_addr, ns_addr, plen
        self.procs: list[subprocess.Popen[bytes]] = []

    def up(self) -> None:
        sh("ip", "netns", "add", self.ns)
        sh("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        sh("ip", "link", "set", self.ns_if, "netns", self.ns)
        sh("ip", "addr", "add", f"{self.host_addr}/{self.plen}", "dev", self.host_if)
        sh("ip", "link", "set", self.host_if, "up")
        self.run_in("ip", "addr", "add", f"{self.ns_addr}/{self.plen}", "dev", self.ns_if)
        self.run_in("ip", "link", "set", self.ns_if, "up")
        self.run_in("ip", "link", "set", "lo", "up")

    def add_host_address(self, addr: str) -> None:
        """Another address on this side of the link: another client machine's source."""
        sh("ip", "addr", "add", f"{addr}/{self.plen}", "dev", self.host_if)

    def run_in(self, *args: str) -> None:
        sh("ip", "netns", "exec", self.ns, *args)

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(["ip", "netns", "exec", self.ns, *args],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def down(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        sh("ip", "link", "del", self.host_if, check=False)
        sh("ip", "netns", "del", self.ns, check=False)
