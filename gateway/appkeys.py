"""Typed keys for everything the app shares between handlers."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from gateway.cache.store import AnswerCache
from gateway.chat import ChatService
from gateway.config import Settings
from gateway.health.monitor import HealthMonitor
from gateway.inventory.tier import Inventory
from gateway.metrics import Metrics
from gateway.providers.base import Provider
from gateway.security.api_keys import ApiKeys
from gateway.security.ratelimit import RateLimiter
from gateway.security.remote import ClientAddresses
from gateway.security.tokens import TokenSigner
from gateway.security.upstream_keys import KeySource
from gateway.sessions import SessionStore
from gateway.state.kv import KV
from gateway.state.redis_link import RedisLink
from gateway.stats import Stats
from gateway.tracing import Tracing
from gateway.turns import Answering, TurnRunner

SETTINGS = web.AppKey("settings", Settings)
UPSTREAM_SESSION = web.AppKey("upstream_session", aiohttp.ClientSession)
PROVIDERS = web.AppKey("providers", dict[str, Provider])
HEALTH = web.AppKey("health", HealthMonitor)
STORE = web.AppKey("store", KV)                 # Redis, or in-process without it
REDIS = web.AppKey("redis", RedisLink)          # present only when Redis is configured
CACHE = web.AppKey("cache", AnswerCache)
SESSIONS = web.AppKey("sessions", SessionStore)
CHAT = web.AppKey("chat", ChatService)
TURNS = web.AppKey("turns", TurnRunner)
API_KEYS = web.AppKey("api_keys", ApiKeys)
STAFF_KEYS = web.AppKey("staff_keys", ApiKeys)
METRICS = web.AppKey("metrics", Metrics)
STATS = web.AppKey("stats", Stats)
RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)
SIGNER = web.AppKey("signer", TokenSigner)
SIGNING_SECRET = web.AppKey("signing_secret", bytes)
DRAINING = web.AppKey("draining", asyncio.Event)
ANSWERING = web.AppKey("answering", Answering)   # chats in flight: what a drain waits for
SOCKETS = web.AppKey("sockets", set)              # live WebSocket connections
INVENTORY = web.AppKey("inventory", Inventory)   # the stock, when the tier is on
DEMO_NOTICE = web.AppKey("demo_notice", str)  # what the demo simulates, for its chat page
TRACING = web.AppKey("tracing", Tracing)   # OpenTelemetry, or nothing when off
UPSTREAM_KEYS = web.AppKey("upstream_keys", dict[str, KeySource])  # per tier, rotatable
CLIENT_ADDRESSES = web.AppKey("client_addresses", ClientAddresses)  # trusted proxies, last seen
