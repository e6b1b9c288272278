"""Settings of the supervisor of `make up` (environment variables; see the README's table)."""

from __future__ import annotations

from pydantic import Field, model_validator

from common.app.settings import BaseServiceSettings


class SupervisorSettings(BaseServiceSettings):
    """How the supervisor restarts a service that exits on its own: an exponential backoff, as Kubernetes
    restarts a crashing container (CrashLoopBackOff), so a service that cannot start does not spin."""

    restart_backoff_initial: float = Field(
        default=1.0,
        gt=0,
        description="Seconds before the first restart of a crashed service (`RESTART_BACKOFF_INITIAL`).",
    )
    restart_backoff_max: float = Field(
        default=60.0,
        gt=0,
        description="Longest wait before a restart; the wait doubles up to it (`RESTART_BACKOFF_MAX`).",
    )
    restart_backoff_reset: float = Field(
        default=120.0,
        gt=0,
        description="Seconds a service must stay up for its next crash to wait the initial delay again "
        "(`RESTART_BACKOFF_RESET`).",
    )

    @model_validator(mode="after")
    def _check_backoff(self) -> SupervisorSettings:
        if self.restart_backoff_max < self.restart_backoff_initial:
            raise ValueError("RESTART_BACKOFF_MAX must be at least RESTART_BACKOFF_INITIAL")
        return self
