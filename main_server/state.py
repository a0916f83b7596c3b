"""Typed keys for the objects Main's application shares between handlers (no singletons)."""

from __future__ import annotations

from aiohttp import web
from redis.asyncio import Redis

from main_server.functions import FunctionService
from main_server.invoke import Invoker
from main_server.reaper import Reaper
from main_server.registry import ManagerRegistry
from shared.execlog import ExecutionLog
from shared.pool import Pool

REDIS = web.AppKey("redis", Redis)
POOL = web.AppKey("pool", Pool)
REGISTRY = web.AppKey("registry", ManagerRegistry)
FUNCTIONS = web.AppKey("functions", FunctionService)
INVOKER = web.AppKey("invoker", Invoker)
LOGS = web.AppKey("execution_log", ExecutionLog)
REAPER = web.AppKey("reaper", Reaper)
