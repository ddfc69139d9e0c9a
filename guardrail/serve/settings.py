"""The ``[serve]`` settings of ``guardrail serve`` and the rule for addresses beyond this
machine."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..config import Config, Limits
from ..errors import ConfigError

__all__ = ["ServeSettings", "is_loopback"]


def is_loopback(address: str) -> bool:
    """Whether ``address`` only listens on this machine (``127.0.0.0/8``, ``::1``,
    ``localhost``)."""
    host = address.strip().strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServeSettings:
    """What ``[serve]`` says (see ``guardrail/defaults.toml``)."""

    address: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    anonymous_scopes: tuple[str, ...] = ("verify", "fetch:manifests")
    allow_anonymous_remote: bool = False
    max_body_bytes: int = 64 << 20
    executor_threads: int = 2
    max_queue: int = 16
    verify_pool: int = -1
    request_timeout_seconds: float = 60.0
    rate_limit_per_second: float = 20.0
    rate_limit_burst: int = 40
    max_results: int = 100
    preload_detectors: bool = False
    preload_generators: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: Config, **overrides: object) -> ServeSettings:
        s = dict(config.section("serve"))
        s.update({k: v for k, v in overrides.items() if v is not None})
        s["anonymous_scopes"] = tuple(s["anonymous_scopes"])
        s["preload_generators"] = tuple(s["preload_generators"])
        return cls(**s)

    def cores_per_worker(self) -> int:
        """The usable CPU cores divided by ``workers`` (at least 1)."""
        from ..scan.worker import threads_per_worker

        return threads_per_worker(self.workers)

    def verify_processes(self) -> int:
        """Processes of the verify pool: ``verify_pool``, or for ``-1``
        :meth:`cores_per_worker`; 0 means verification runs in threads."""
        return self.verify_pool if self.verify_pool >= 0 else self.cores_per_worker()

    def upload_limit(self, config: Config) -> int:
        """Largest accepted upload: ``max_body_bytes`` or ``[limits] max_file_bytes``,
        whichever is smaller."""
        return min(self.max_body_bytes, Limits.from_config(config).max_file_bytes)

    def check_exposure(self) -> None:
        """Refuse anonymous access on an address other than a loopback one unless
        ``allow_anonymous_remote`` says so.

        Raises
        ------
        ConfigError
            The service would answer anyone on the network without a key.
        """
        if is_loopback(self.address) or not self.anonymous_scopes or self.allow_anonymous_remote:
            return
        raise ConfigError(
            f"refusing to serve anonymous {', '.join(self.anonymous_scopes)} on {self.address}, "
            "which is reachable beyond this machine: set serve.anonymous_scopes = [] and give "
            "clients API keys (guardrail serve keys create), or set "
            "serve.allow_anonymous_remote = true for a deliberately public service")
