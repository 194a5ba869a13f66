"""Metrics: the server's Prometheus counters, and GET /metrics's text built from them and the state.

Counters that only grow as things happen (turns, tokens, latency, plugin restarts) are kept
here and fed by the code that sees them happen. Values the library already tracks (live
sessions, git commits, the agent cache) are read from the `ServerState` at render time, so
they cannot drift from the truth. Each `Metrics` has its own registry: two servers in one
process (tests) never share numbers.

The counts are plain numbers; `prometheus_client` is imported only to render them (a scrape),
not at start (it is a tenth of a server's start-up) nor on a turn.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

    from duragent.server.state import ServerState
    from duragent.vcs.committer import Committer

#: Session states, always all exposed so a dashboard sees 0 rather than a missing series.
SESSION_STATES = ("active", "running", "paused", "ended")
#: Turn latency buckets in seconds: a model turn takes from a fraction of a second to minutes.
TURN_SECONDS_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


@dataclass
class _Series:
    """One labelled counter: its value and when it was first counted (Prometheus's `_created`)."""

    value: float = 0.0
    created: float = field(default_factory=time.time)


@dataclass
class _LabelledCounter:
    name: str
    documentation: str
    label: str
    series: dict[str, _Series] = field(default_factory=dict)

    def add(self, label_value: str, amount: float = 1.0) -> None:
        series = self.series.get(label_value)
        if series is None:  # (not made before looking: its `created` reads the clock)
            series = self.series[label_value] = _Series()
        series.value += amount

    def family(self) -> Metric:
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily(self.name, self.documentation, labels=[self.label])
        for label_value, series in self.series.items():
            family.add_metric([label_value], series.value, created=series.created)
        return family


@dataclass
class _Histogram:
    name: str
    documentation: str
    bounds: tuple[float, ...]
    #: Observations per bucket (not cumulative); the last one is +Inf's.
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    created: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def family(self) -> Metric:
        from prometheus_client.core import HistogramMetricFamily

        cumulative, buckets = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            cumulative += count
            # as prometheus_client writes `le` for these bounds: 0.1, 1.0, 600.0, +Inf
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), float(cumulative)))
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], buckets, self.total)
        family.add_sample(f"{self.name}_created", {}, self.created)
        return family


class Metrics:
    """The process's metrics; `render(state)` gives the Prometheus text exposition."""

    def __init__(self) -> None:
        self._turns = _LabelledCounter("duragent_turns", "Turns finished, by outcome.", "outcome")
        self._tokens = _LabelledCounter("duragent_tokens", "Model tokens used, by direction.", "direction")
        self._turn_seconds = _Histogram(
            "duragent_turn_duration_seconds",
            "Wall time of a turn, from the user's message to the final reply.",
            TURN_SECONDS_BUCKETS,
        )
        self._plugin_restarts = _LabelledCounter(
            "duragent_plugin_restarts", "Gateway plugin restarts, by plugin.", "plugin"
        )
        for direction in ("input", "output"):
            self._tokens.add(direction, 0)  # exposed as 0 before the first turn

    def turn_finished(self, seconds: float, outcome: str) -> None:
        """Count one finished turn (`outcome`: "completed", "error", "cancelled"...) and its latency."""
        self._turns.add(outcome)
        self._turn_seconds.observe(max(seconds, 0.0))

    def tokens(self, input: int, output: int) -> None:
        """Add one model call's token usage."""
        self._tokens.add("input", max(input, 0))
        self._tokens.add("output", max(output, 0))

    def plugin_restart(self, name: str) -> None:
        """Count a restart of gateway plugin `name`."""
        self._plugin_restarts.add(name)

    def families(self) -> Iterator[Metric]:
        """The counters as Prometheus metric families."""
        yield self._turns.family()
        yield self._tokens.family()
        yield self._turn_seconds.family()
        yield self._plugin_restarts.family()

    @property
    def registry(self) -> CollectorRegistry:
        """A Prometheus registry holding these counters (made on each call)."""
        from prometheus_client import CollectorRegistry

        registry = CollectorRegistry(auto_describe=True)
        registry.register(_Collected(self.families))
        return registry

    def render(self, state: ServerState) -> str:
        """Every metric in the Prometheus text format (version 0.0.4)."""
        from prometheus_client import CollectorRegistry, generate_latest

        live = CollectorRegistry(auto_describe=False)
        live.register(_Collected(lambda: _state_families(state)))
        return (generate_latest(self.registry) + generate_latest(live)).decode("utf-8")


@dataclass(frozen=True)
class _Collected:
    """A Prometheus collector of whatever `families` yields at scrape time."""

    families: Callable[[], Iterable[Metric]]

    def collect(self) -> Iterable[Metric]:
        """The families, read now."""
        return self.families()


def _state_families(state: ServerState) -> Iterator[Metric]:
    """The live-session, git, agent-cache and gateway metrics of `state`: what the library counts."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    counts: Tally[str] = Tally(session.status for session in state.sessions.live.values())
    sessions = GaugeMetricFamily(
        "duragent_live_sessions", "Sessions loaded in this process, by state.", labels=["state"]
    )
    for status in SESSION_STATES:
        sessions.add_metric([status], counts[status])
    yield sessions
    # Only a committer already running: reading `Workspace.committer` would start one, which
    # does git work (committing offline edits) on the event loop in the middle of a scrape.
    committer: Committer | None = vars(state.workspace).get("committer")
    if committer is not None or state.config.git.enabled:
        yield CounterMetricFamily(
            "duragent_git_commits",
            "Commits made in the data repository.",
            value=committer.commits_made if committer else 0,
        )
        yield GaugeMetricFamily(
            "duragent_git_pending_changes",
            "Changes waiting to be committed.",
            value=committer.pending if committer else 0,
        )
    stats = state.agents.stats
    yield CounterMetricFamily(
        "duragent_agent_cache_hits", "Agent lookups served from the cache.", value=stats.hits
    )
    yield CounterMetricFamily(
        "duragent_agent_cache_misses", "Agent lookups that read the agent's files.", value=stats.misses
    )
    yield CounterMetricFamily(
        "duragent_agent_cache_evictions", "Loaded agents dropped from the LRU cache.", value=stats.evictions
    )
    yield GaugeMetricFamily("duragent_agents_loaded", "Agent specs in the cache.", value=stats.loaded)
    plugins = GaugeMetricFamily(
        "duragent_plugin_up",
        "Gateway plugins by state (1 for the current state; crash_loop means it gave up restarting).",
        labels=["gateway", "state"],
    )
    for plugin in state.gateways.statuses() if state.gateways is not None else ():
        plugins.add_metric([plugin.name, plugin.state], 1)
    yield plugins
    yield GaugeMetricFamily(
        "duragent_start_time_seconds", "When the server started (Unix time).", value=state.started_at
    )
