"""The faults: killing containers, Managers and a Main, restarting Redis, under load."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from hotpool.benchmarks.chaos.cluster import Bootstrap, Cluster, bootstrap_processes
from hotpool.benchmarks.chaos.config import RUNTIME_OF, Fault, HarnessError
from hotpool.benchmarks.chaos.handler_watch import HandlerWatch, service_of
from hotpool.benchmarks.chaos.load import Load
from hotpool.benchmarks.chaos.observe import Observer
from hotpool.benchmarks.chaos.schedule_audit import leading_main
from hotpool.shared import keys, schedule_keys
from hotpool.shared.models import PoolEntry
from hotpool.shared.procs import descendants
from hotpool.shared.redis_conn import REDIS_ERRORS

# ---------------------------------------------------------------------------------------------
# the faults

# a kill that wants a container running a call looks for one this often, this long: in the
# leases for Python's (its slow calls hold theirs for seconds), in the ledger for the other
# runtimes' (their calls last milliseconds: see handler_watch)
BUSY_POLL_S = 0.02
HANDLER_POLL_S = 0.005
BUSY_WAIT_S = 2.0


class Chaos:
    """Carries out the fault plan against the cluster."""

    def __init__(self, cluster: Cluster, observer: Observer, load: Load, t0: float) -> None:
        self.cluster = cluster
        self.observer = observer
        self.load = load
        self.t0 = t0
        self.done: Counter[str] = Counter()
        self.harness_errors: list[str] = []
        self.handlers = HandlerWatch(cluster.exec_log)

    async def run(self, faults: list[Fault], stop_at: float) -> None:
        majors = [f for f in faults if f.kind != "kill_container"]
        kills = [f for f in faults if f.kind == "kill_container"]
        await asyncio.gather(
            self._run_in_order(majors, stop_at), self._run_in_order(kills, stop_at)
        )

    async def _run_in_order(self, faults: list[Fault], stop_at: float) -> None:
        for fault in faults:
            await asyncio.sleep(max(0.0, self.t0 + fault.at_s - time.time()))
            if time.time() >= stop_at - 0.5:
                self.observer.event("skipped", fault=fault.kind, planned_t=round(fault.at_s, 2))
                continue
            action = getattr(self, fault.kind)
            await action(fault)
            self.done[fault.kind] += 1

    async def _restart(self, name: str, start: Callable[[], Awaitable[None]]) -> None:
        for attempt in range(1, 4):
            try:
                await start()
            except HarnessError as exc:
                self.observer.event("restart_failed", service=name, attempt=attempt, error=str(exc))
                self.cluster.kill(name)
                await asyncio.sleep(1.0)
                continue
            self.observer.event("restarted", service=name)
            return
        self.harness_errors.append(f"{name} did not come back after 3 attempts")

    async def _leases(self) -> dict[str, PoolEntry]:
        """The containers leased now (running a call), by id; none while Redis is away."""
        with contextlib.suppress(*REDIS_ERRORS):
            raw = await self.observer.redis.zrange(keys.LEASES, 0, -1)
            return {e.container_id: e for e in map(PoolEntry.decode, raw)}
        return {}

    async def _busy(self, runtime: str) -> tuple[dict[str, PoolEntry], list[Bootstrap]]:
        """The leased containers of ``runtime`` that have processes, waiting up to
        ``BUSY_WAIT_S`` for one; and the run's container processes. Leases come and go in
        milliseconds: the processes are scanned again only for a container started since the
        last scan."""
        deadline = time.monotonic() + BUSY_WAIT_S
        processes = await asyncio.to_thread(bootstrap_processes, self.cluster.run_dir)
        scanned = {b.container_id for b in processes}
        gone: set[str] = set()  # leased, but not running: its lease outlives it
        while True:
            leases = await self._leases()
            busy = {
                cid: e for cid, e in leases.items()
                if RUNTIME_OF.get(e.function) == runtime and cid not in gone
            }  # fmt: skip
            if set(busy) - scanned:
                processes = await asyncio.to_thread(bootstrap_processes, self.cluster.run_dir)
                scanned = {b.container_id for b in processes}
                gone |= set(busy) - scanned
                continue  # the scan took a while: are they still busy?
            if busy or time.monotonic() >= deadline:
                return busy, processes
            await asyncio.sleep(BUSY_POLL_S)

    async def _kill_in_handler(self, fault: Fault) -> bool:
        """Kill where a call of the fault's runtime runs its handler (its container's process
        group, or its custom runtime alone), waiting up to ``BUSY_WAIT_S`` for one; False when
        none came (or it ended first)."""
        deadline = time.monotonic() + BUSY_WAIT_S
        while not (calls := await asyncio.to_thread(self.handlers.poll, fault.runtime)):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(HANDLER_POLL_S)
        call = calls[fault.target % len(calls)]
        try:
            # the Node.js bootstrap leads its container's group; a custom runtime is in its relay's
            target = call["pid"] if fault.part == "runtime" else os.getpgid(call["pid"])
            service = service_of(target, self.cluster.run_dir)
            if service is None or not service.startswith("mgr"):
                return False
            kill = os.kill if fault.part == "runtime" else os.killpg
            kill(target, signal.SIGKILL)
        except ProcessLookupError:
            return False
        self.observer.event(
            "kill_container", container=call["container"],
            manager=self.cluster.manager_ids[int(service.removeprefix("mgr"))], pids=[target],
            leased=True, runtime=fault.runtime, part=fault.part, in_handler=call["token"],
        )  # fmt: skip
        return True

    async def kill_container(self, fault: Fault) -> None:
        """SIGKILL one container of the fault's runtime: all its processes, as ``docker kill``
        does, or only a custom runtime's own process. A ``busy`` kill picks one running a call,
        so the call dies inside its container (Python's: one leased; the other runtimes': one
        whose handler runs); the rest (and a busy one that finds none) pick any ready one (of
        any runtime when none of the fault's is)."""
        if fault.busy and fault.runtime != "python" and await self._kill_in_handler(fault):
            return
        python_busy = fault.busy and fault.runtime == "python"
        busy, processes = await self._busy(fault.runtime) if python_busy else ({}, [])
        if busy:
            cid = sorted(busy)[fault.target % len(busy)]
            manager, runtime, leased = busy[cid].manager_id, fault.runtime, True
        else:
            described, _ = await self.observer.managers()
            ready = sorted(cid for cid, c in described.items() if c["state"] == "ready")
            ready = [cid for cid in ready if described[cid]["runtime"] == fault.runtime] or ready
            if not ready:
                self.observer.event("kill_container", container=None, note="no ready container")
                return
            cid = ready[fault.target % len(ready)]
            manager, runtime = described[cid]["manager"], described[cid]["runtime"]
            leased = cid in await self._leases()
            processes = await asyncio.to_thread(bootstrap_processes, self.cluster.run_dir)
        part = fault.part if runtime == fault.runtime == "provided" else "container"
        pids = [b.pid for b in processes if b.container_id == cid]
        if part == "runtime":
            pids = sorted(set().union(*map(descendants, pids)))
        # a container's bootstrap leads its own process group: killing the group kills it all
        kill = os.kill if part == "runtime" else os.killpg
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                kill(pid, signal.SIGKILL)
        self.observer.event(
            "kill_container", container=cid, manager=manager, pids=pids, leased=leased,
            runtime=runtime, part=part,
        )  # fmt: skip

    async def restart_manager(self, fault: Fault) -> None:
        name = f"mgr{fault.target}"
        pid = self.cluster.kill(name)
        self.observer.event(
            "kill_manager", service=name, manager=self.cluster.manager_ids[fault.target], pid=pid,
            down_s=round(fault.down_s, 2),
        )  # fmt: skip
        await asyncio.sleep(fault.down_s)
        await self._restart(name, lambda: self.cluster.start_manager(fault.target))

    async def restart_redis(self, fault: Fault) -> None:
        placed = None
        with contextlib.suppress(*REDIS_ERRORS):
            state = await self.observer.pool_state()
            placed = {"pool": sum(map(len, state.lists.values())), "leases": len(state.leases)}
        # the outage begins with the stop: logged first, so the timeline brackets it
        self.observer.event("stop_redis", down_s=round(fault.down_s, 2), placed=placed)
        await asyncio.to_thread(self.cluster.stop_redis)
        await asyncio.sleep(fault.down_s)
        await self._restart("redis", self.cluster.start_redis)

    async def _leading_main(self) -> int | None:
        """The Main whose scheduler leads, if one does and Redis answers."""
        with contextlib.suppress(*REDIS_ERRORS):
            name = leading_main(self.cluster, await self.observer.redis.get(schedule_keys.LEADER))
            return None if name is None else int(name.removeprefix("main"))
        return None

    async def restart_main(self, fault: Fault) -> None:
        # the Main that leads the schedules, so each Main kill is a leader's death too (the
        # plan's target when none leads)
        leader = await self._leading_main()
        i = fault.target if leader is None else leader
        name = f"main{i}"
        await self.observer.poll_main(i, timeout_s=0.5)  # its latest counters, then bank them
        deadline = time.monotonic() + 1.0
        # kill it mid-request (the load runs in this loop, so polling its counter is exact)
        while self.load.in_flight[i] == 0 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        in_flight = self.load.in_flight[i]
        self.observer.counters.bank(i)
        pid = self.cluster.kill(name)
        self.observer.event(
            "kill_main", service=name, pid=pid, main=i, in_flight=in_flight,
            down_s=round(fault.down_s, 2), leader=leader is not None,
        )  # fmt: skip
        await asyncio.sleep(fault.down_s)
        await self._restart(name, lambda: self.cluster.start_main(i))
