"""Typed keys for everything the app shares between handlers."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from gateway.cache.store import ResponseCache
from gateway.chat import ChatService
from gateway.config import Settings
from gateway.health.local import LocalHealth
from gateway.providers.base import Provider

SETTINGS = web.AppKey("settings", Settings)
UPSTREAM_SESSION = web.AppKey("upstream_session", aiohttp.ClientSession)
PROVIDERS = web.AppKey("providers", dict[str, Provider])
HEALTH = web.AppKey("health", LocalHealth)
CACHE = web.AppKey("cache", ResponseCache)
CHAT = web.AppKey("chat", ChatService)
