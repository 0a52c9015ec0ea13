"""The keys the gateway presents upstream (on-prem, OpenAI): rotated without a restart.

A key comes from the environment or from a file. A file is re-read when it changes (checked
every few seconds) and on SIGHUP. A new key is used at once, but the previous one is kept
until the new one is seen to work: an upstream that refuses the new key (401/403 — the
request was refused, nothing was generated) gets the same request once more with the old
key. That covers both orders of a rotation: gateway first, or upstream first.

Each key's age comes from `api_key_rotated_at` in the config, else the file's mtime (an
environment key without `rotated_at` has no known age). Past `auth.key_max_age_days` one
warning is logged; staff /health and `scout_key_age_seconds` show the age.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from gateway.logs import get_logger

log = get_logger("scout.keys")


class KeySource:
    def __init__(self, name: str, value: str | None, path: str | None = None,
                 rotated_at: float | None = None, clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self.path = path
        self.rotated_at = rotated_at
        self.clock = clock
        self._current = value
        self._previous: str | None = None
        self._mtime = self._stat()
        self.warned = False

    def _stat(self) -> float | None:
        if self.path is None:
            return None
        try:
            return os.stat(self.path).st_mtime
        except OSError:
            return None

    # -- what a request uses ------------------------------------------------------

    def current(self) -> str | None:
        return self._current

    def fallback(self) -> str | None:
        """The previous key, while the current one has not been seen to work."""
        return self._previous

    def worked(self, key: str) -> None:
        if key == self._current and self._previous is not None:
            self._previous = None
            log.info("key_rotated", key=self.name, note="the new key works; the old one is dropped")

    def refused(self, key: str) -> None:
        if key == self._current and self._previous is not None:
            log.error("key_refused", key=self.name, note="the upstream refused the new key and "
                      "the old one: check both ends of the rotation")

    # -- rotation ------------------------------------------------------------------

    def reload_if_changed(self) -> bool:
        if self.path is None or self._stat() == self._mtime:
            return False
        return self.reload()

    def reload(self) -> bool:
        """Re-read the file (SIGHUP, or it changed). True if the key changed."""
        if self.path is None:
            return False
        self._mtime = self._stat()
        try:
            value = Path(self.path).read_text().strip()
        except OSError as exc:
            log.error("key_reload_failed", key=self.name, reason=exc.strerror,
                      note="keeping the key in use")
            return False
        if not value or value == self._current:
            return False
        self._previous, self._current = self._current, value
        self.warned = False
        log.info("key_loaded", key=self.name, note="in use; the previous key is kept until "
                 "this one is seen to work")
        return True

    def age_s(self) -> float | None:
        born = self.rotated_at if self.rotated_at is not None else self._mtime
        return None if born is None else max(0.0, self.clock() - born)

    def check_age(self, max_age_s: float) -> None:
        """One warning when the key is older than `max_age_s` (again after a rotation)."""
        age = self.age_s()
        if age is not None and age > max_age_s and not self.warned:
            self.warned = True
            log.warning("key_old", key=self.name, age_days=round(age / 86400, 1),
                        max_age_days=round(max_age_s / 86400, 1), note="rotate it")

    def describe(self, max_age_s: float) -> dict[str, object]:
        age = self.age_s()
        return {"source": "file" if self.path else "environment",
                "age_days": None if age is None else round(age / 86400, 2),
                "rotation_due_in_days": None if age is None
                else round((max_age_s - age) / 86400, 2),
                "rotating": self._previous is not None}
