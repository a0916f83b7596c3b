"""Typed keys for the objects Main's application shares between handlers (no singletons)."""

from __future__ import annotations

from collections import Counter

import aiohttp
from aiohttp import web
from redis.asyncio import Redis

from hotpool.main_server.async_consumer import AsyncConsumer
from hotpool.main_server.functions import FunctionService
from hotpool.main_server.invoke import Invoker
from hotpool.main_server.layers import LayerService
from hotpool.main_server.manager_client import ManagerClient
from hotpool.main_server.metrics import MainMetrics
from hotpool.main_server.reaper import Reaper
from hotpool.main_server.ws_connection import SocketTable
from hotpool.main_server.ws_hub import ConnectionHub
from hotpool.shared.async_queue import AsyncQueue
from hotpool.shared.codestore import CodeStore
from hotpool.shared.execlog import ExecutionLog, RecordWriter
from hotpool.shared.metadata import MetadataStore
from hotpool.shared.pool import Pool
from hotpool.shared.registry import ManagerRegistry
from hotpool.shared.settings import Settings
from hotpool.shared.ws_token import ConnectionTokens

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)
METADATA = web.AppKey("metadata", MetadataStore)
CODE_STORE = web.AppKey("code_store", CodeStore)
LOGS = web.AppKey("execution_log", ExecutionLog)
RECORDS = web.AppKey("record_writer", RecordWriter)
HTTP = web.AppKey("http", aiohttp.ClientSession)
POOL = web.AppKey("pool", Pool)
REGISTRY = web.AppKey("registry", ManagerRegistry)
MANAGERS = web.AppKey("managers", ManagerClient)
FUNCTIONS = web.AppKey("functions", FunctionService)
LAYERS = web.AppKey("layers", LayerService)
INVOKER = web.AppKey("invoker", Invoker)
REAPER = web.AppKey("reaper", Reaper)
ASYNC_QUEUE = web.AppKey("async_queue", AsyncQueue)
ASYNC_CONSUMER = web.AppKey("async_consumer", AsyncConsumer)
# what the web route (/fn/) did on this replica: calls, preflights, 502s, malformed results
WEB_COUNTERS = web.AppKey("web_counters", Counter)
# this replica's WebSocket connections (main_server.ws) and their counters
WS_SOCKETS = web.AppKey("ws_sockets", SocketTable)
# the connection hub (main_server.ws_hub): @connections and the other replicas reach a
# connection through it; and the functions' connection tokens
WS_HUB = web.AppKey("ws_hub", ConnectionHub)
WS_TOKENS = web.AppKey("ws_tokens", ConnectionTokens)

# metrics (issue 16): this app's Prometheus registry and its hot-path counters, served on the
# metrics port by main_server.serve
METRICS = web.AppKey("metrics", MainMetrics)
