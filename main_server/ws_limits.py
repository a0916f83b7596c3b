"""The limits of one WebSocket connection, as pure decisions over ``now``: its message rate
(a token bucket) and when it must close (idle timeout, maximum lifetime), as API Gateway
has them (https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html).
"""

from __future__ import annotations

from dataclasses import dataclass

GOING_AWAY = 1001
GOING_AWAY_REASON = "Going away"  # API Gateway's reason, idle or too old


@dataclass(slots=True)
class TokenBucket:
    """``rate_per_s`` tokens a second, up to ``burst``; one message takes one."""

    rate_per_s: float
    burst: float
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate_per_s: float, now: float) -> TokenBucket:
        burst = max(1.0, rate_per_s)  # a burst of as many as a second allows
        return cls(rate_per_s, burst, burst, now)

    def take(self, now: float) -> bool:
        """Whether a message may pass at ``now`` (and take its token)."""
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate_per_s)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass(frozen=True, slots=True)
class Deadlines:
    """When a connection closes for itself: ``idle_s`` after its last message either way,
    ``lifetime_s`` after it opened (times on one monotonic clock)."""

    opened: float
    idle_s: float
    lifetime_s: float

    def expired(self, now: float, last_active: float) -> str | None:
        """Why the connection must close at ``now`` ("idle", "lifetime"), or None."""
        if now >= self.opened + self.lifetime_s:
            return "lifetime"
        if now >= last_active + self.idle_s:
            return "idle"
        return None

    def wait_s(self, now: float, last_active: float) -> float:
        """How long until the next deadline may pass."""
        next_at = min(self.opened + self.lifetime_s, last_active + self.idle_s)
        return max(0.0, next_at - now)

    def lifetime_end(self) -> float:
        return self.opened + self.lifetime_s
