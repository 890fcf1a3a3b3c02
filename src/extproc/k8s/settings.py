"""Settings of the Kubernetes source and of leader election (no `kubernetes` import here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_NAMESPACE = "default"
DEFAULT_LEASE_DURATION_S = 15.0
# client-go's proportions: renew every 2 s, give up leadership after 10 s of failed renewals.
MAX_RETRY_PERIOD_S = 2.0
RENEW_DEADLINE_FRACTION = 2 / 3
DEFAULT_WATCH_BACKOFF_S = 0.5
DEFAULT_WATCH_MAX_BACKOFF_S = 30.0
# Server-side watch timeout; the watch is then resumed from the last resourceVersion.
DEFAULT_WATCH_TIMEOUT_S = 300


def default_namespace(path: Path = SERVICE_ACCOUNT_NAMESPACE) -> str:
    """The pod's own namespace when running in a cluster, else ``default``."""
    try:
        return path.read_text(encoding="utf-8").strip() or DEFAULT_NAMESPACE
    except OSError:
        return DEFAULT_NAMESPACE


def default_lease_name(pool_name: str) -> str:
    return f"{pool_name}-epp-leader"


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchSettings:
    """Reconnect behaviour of every list+watch: exponential backoff with jitter, capped."""

    backoff: float = DEFAULT_WATCH_BACKOFF_S
    max_backoff: float = DEFAULT_WATCH_MAX_BACKOFF_S
    timeout_seconds: int = DEFAULT_WATCH_TIMEOUT_S
    connect_timeout: float = 5.0
    list_timeout: float = 30.0
    page_size: int = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaderElectionSettings:
    lease_name: str
    identity: str
    lease_duration: float = DEFAULT_LEASE_DURATION_S

    @property
    def retry_period(self) -> float:
        """How often the leader renews and a standby retries."""
        return min(MAX_RETRY_PERIOD_S, self.lease_duration / 4)

    @property
    def renew_deadline(self) -> float:
        """A leader that could not renew for this long steps down (before the lease expires)."""
        return self.lease_duration * RENEW_DEADLINE_FRACTION


@dataclass(frozen=True, slots=True, kw_only=True)
class KubernetesSettings:
    pool_name: str
    namespace: str = DEFAULT_NAMESPACE
    kubeconfig: Path | None = None  # None: in-cluster config, else ~/.kube/config ($KUBECONFIG)
    leader_election: LeaderElectionSettings | None = None
    watch: WatchSettings = WatchSettings()
