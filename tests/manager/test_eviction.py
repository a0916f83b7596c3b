"""Tests of manager.eviction: which idle containers a cold start on a full node evicts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotpool.manager.eviction import IdleContainer, NodeUse, choose_victims
from hotpool.shared.models import PoolEntry

pytestmark = pytest.mark.unit


def idle(cid: str, since: float, *, function: str = "other", version: int = 1, mb: int = 128):
    entry = PoolEntry(function, version, "m1", cid, "127.0.0.1:9000")
    return IdleContainer(entry, mb, since)


def use(containers: int, memory_mb: int = 0, *, cap: int = 3, cap_mb: int = 10_000) -> NodeUse:
    return NodeUse(containers, memory_mb, cap, cap_mb)


def ids(victims: list[IdleContainer] | None) -> list[str] | None:
    return None if victims is None else [v.entry.container_id for v in victims]


@pytest.mark.parametrize(
    ("candidates", "node", "memory_mb", "expected"),
    [
        pytest.param([idle("a", 1)], use(2), 128, [], id="room-left-no-eviction"),
        pytest.param([], use(3), 128, None, id="full-nothing-idle"),
        pytest.param(
            [idle("c", 3), idle("a", 1), idle("b", 2)], use(3), 128, ["a"], id="lru-first"
        ),
        pytest.param([idle("b", 1), idle("a", 1)], use(3), 128, ["a"], id="tie-by-container-id"),
        pytest.param(
            [idle("a", 1), idle("b", 2), idle("c", 3)], use(4), 128, ["a", "b"], id="over-full"
        ),
        pytest.param(
            [idle("own", 1, function="fn", version=2), idle("b", 2)],
            use(3),
            128,
            ["b"],
            id="own-skipped",
        ),
        pytest.param(
            [idle("own", 1, function="fn", version=2)],
            use(3),
            128,
            None,
            id="only-own-idle-refused",
        ),
        pytest.param(
            [idle("old", 1, function="fn", version=1)],
            use(3),
            128,
            ["old"],
            id="own-older-version-taken",
        ),
        pytest.param(
            [idle("a", 1, mb=128), idle("b", 2, mb=256), idle("c", 3, mb=256)],
            use(3, 640, cap=10, cap_mb=768),
            384,
            ["a", "b"],
            id="memory-until-enough",
        ),
        pytest.param(
            [idle("a", 1, mb=256)],
            use(2, 512, cap=10, cap_mb=512),
            512,
            None,
            id="memory-not-enough-even-all",
        ),
        pytest.param(
            [idle("a", 1, mb=256)], use(2, 256, cap=10, cap_mb=512), 256, [], id="memory-fits"
        ),
        pytest.param(
            [idle("a", 1, mb=64), idle("b", 2, mb=512)],
            use(3, 576, cap=3, cap_mb=640),
            256,
            ["a", "b"],
            id="slots-and-memory",
        ),
    ],
)
def test_choose_victims(candidates, node, memory_mb, expected):
    victims = choose_victims(candidates, node, memory_mb=memory_mb, function="fn", version=2)

    assert ids(victims) == expected


idle_containers = st.lists(
    st.builds(
        idle,
        cid=st.text("abcdefgh", min_size=1, max_size=3),
        since=st.integers(0, 100).map(float),
        function=st.sampled_from(["fn", "other", "third"]),
        version=st.integers(1, 2),
        mb=st.integers(64, 1024),
    ),
    max_size=8,
    unique_by=lambda c: c.entry.container_id,
)


@given(
    candidates=idle_containers,
    containers=st.integers(0, 12),
    memory_used=st.integers(0, 4096),
    cap=st.integers(1, 10),
    cap_mb=st.integers(256, 4096),
    memory_mb=st.integers(64, 1024),
)
def test_victims_are_the_fewest_lru_others_that_make_room(
    candidates, containers, memory_used, cap, cap_mb, memory_mb
):
    node = NodeUse(containers, memory_used, cap, cap_mb)
    victims = choose_victims(candidates, node, memory_mb=memory_mb, function="fn", version=2)

    others = sorted(
        (c for c in candidates if (c.entry.function, c.entry.version) != ("fn", 2)),
        key=lambda c: (c.idle_since, c.entry.container_id),
    )

    def fits(removed: list[IdleContainer]) -> bool:
        after = NodeUse(
            containers - len(removed), memory_used - sum(c.memory_mb for c in removed), cap, cap_mb
        )
        return after.shortfall(memory_mb) == (0, 0)

    if victims is None:
        assert not fits(others)
        return
    # a prefix of the LRU order of the other versions' containers: oldest first, none of its own
    assert victims == others[: len(victims)]
    assert fits(victims)
    # no more than needed
    assert not victims or not fits(victims[:-1])
