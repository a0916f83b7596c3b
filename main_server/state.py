"""Typed keys for the objects Main's application shares between handlers (no singletons)."""

from __future__ import annotations

from aiohttp import web
from redis.asyncio import Redis

from hotpool.main_server.functions import FunctionService
from hotpool.main_server.invoke import Invoker
from hotpool.main_server.reaper import Reaper
from hotpool.shared.execlog import ExecutionLog
from hotpool.shared.pool import Pool
from hotpool.shared.registry import ManagerRegistry

REDIS = web.AppKey("redis", Redis)
POOL = web.AppKey("pool", Pool)
REGISTRY = web.AppKey("registry", ManagerRegistry)
FUNCTIONS = web.AppKey("functions", FunctionService)
INVOKER = web.AppKey("invoker", Invoker)
LOGS = web.AppKey("execution_log", ExecutionLog)
REAPER = web.AppKey("reaper", Reaper)
