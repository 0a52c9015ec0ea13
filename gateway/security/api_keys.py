"""Frontend API keys: several at once, each with a label, kept only as SHA-256 digests.

Keys come from the environment ("label:key,label:key") and/or a file, one
"label key" or "label sha256:<hex>" per line (# comments). The file is re-read
when it changes or on SIGHUP, so a new key can be added, deployed to the
frontend, and the old one removed later — rotation with overlap, no restart.
A presented key is hashed and compared with every digest in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from gateway.logs import get_logger

log = get_logger("scout.auth")


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def parse_env(value: str) -> tuple[dict[str, bytes], list[str]]:
    keys: dict[str, bytes] = {}
    problems = []
    for i, item in enumerate(p.strip() for p in value.split(",")):
        if not item:
            continue
        label, sep, key = item.partition(":")
        if not sep or not label or len(key) < 16:
            problems.append(f"entry {i + 1}: expected label:key with a key of 16+ characters")
            continue
        keys[label] = digest(key)
    return keys, problems


def parse_file(text: str) -> tuple[dict[str, bytes], list[str]]:
    keys: dict[str, bytes] = {}
    problems = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            problems.append(f"line {n}: expected 'label key' or 'label sha256:<hex>'")
            continue
        label, key = parts
        if key.startswith("sha256:"):
            try:
                d = bytes.fromhex(key[7:])
            except ValueError:
                d = b""
            if len(d) != 32:
                problems.append(f"line {n}: sha256: needs 64 hex digits")
                continue
            keys[label] = d
        elif len(key) < 16:
            problems.append(f"line {n}: key too short (16+ characters)")
        else:
            keys[label] = digest(key)
    return keys, problems


class ApiKeys:
    def __init__(self, env_value: str | None = None, file: str | None = None) -> None:
        self._env = env_value or ""
        self._file = file
        self._mtime: float | None = None
        self._keys: dict[str, bytes] = {}
        self.reload()

    @property
    def labels(self) -> list[str]:
        return sorted(self._keys)

    def reload(self) -> list[str]:
        """Re-read the sources; on a bad file, keep the keys we had (and say why)."""
        keys, problems = parse_env(self._env)
        if self._file:
            try:
                self._mtime = os.stat(self._file).st_mtime
                file_keys, file_problems = parse_file(Path(self._file).read_text())
                keys.update(file_keys)
                problems += [f"{self._file} {p}" for p in file_problems]
            except OSError as exc:
                problems.append(f"{self._file}: {exc.strerror}")
                if self._keys:
                    log.error("api_keys_reload_failed", reason=problems[-1],
                              keeping=len(self._keys))
                    return problems
        for p in problems:
            log.error("api_keys_problem", problem=p)
        if set(keys) != set(self._keys) or any(keys[k] != self._keys.get(k) for k in keys):
            log.info("api_keys_loaded", labels=",".join(sorted(keys)) or "-")
        self._keys = keys
        return problems

    def reload_if_changed(self) -> None:
        if not self._file:
            return
        try:
            mtime = os.stat(self._file).st_mtime
        except OSError:
            return
        if mtime != self._mtime:
            self.reload()

    def check(self, presented: str | None) -> str | None:
        """The label of a valid key, else None. Every digest is compared: no early exit."""
        if not presented:
            return None
        d = digest(presented)
        found = None
        for label, known in self._keys.items():
            if hmac.compare_digest(d, known):
                found = label
        return found
