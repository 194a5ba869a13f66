"""Metrics: the server's Prometheus counters, and GET /metrics's text built from them and the state.

Counters that only grow as things happen (turns, tokens, latency, plugin restarts) are kept
here and fed by the code that sees them happen. Values the library already tracks (live
sessions, git commits, the agent cache) are read from the `ServerState` at render time, so
they cannot drift from the truth. Each `Metrics` has its own registry: two servers in one
process (tests) never share numbers.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from duragent.server.state import ServerState
    from duragent.vcs.committer import Committer

#: Session states, always all exposed so a dashboard sees 0 rather than a missing series.
SESSION_STATES = ("active", "running", "paused", "ended")
#: Turn latency buckets in seconds: a model turn takes from a fraction of a second to minutes.
TURN_SECONDS_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class Metrics:
    """The process's metrics; `render(state)` gives the Prometheus text exposition."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._turns = Counter(
            "duragent_turns", "Turns finished, by outcome.", ["outcome"], registry=self.registry
        )
        self._tokens = Counter(
            "duragent_tokens", "Model tokens used, by direction.", ["direction"], registry=self.registry
        )
        self._turn_seconds = Histogram(
            "duragent_turn_duration_seconds",
            "Wall time of a turn, from the user's message to the final reply.",
            buckets=TURN_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self._plugin_restarts = Counter(
            "duragent_plugin_restarts",
            "Gateway plugin restarts, by plugin.",
            ["plugin"],
            registry=self.registry,
        )
        for direction in ("input", "output"):
            self._tokens.labels(direction)  # exposed as 0 before the first turn

    def turn_finished(self, seconds: float, outcome: str) -> None:
        """Count one finished turn (`outcome`: "completed", "error", "cancelled"...) and its latency."""
        self._turns.labels(outcome).inc()
        self._turn_seconds.observe(max(seconds, 0.0))

    def tokens(self, input: int, output: int) -> None:
        """Add one model call's token usage."""
        self._tokens.labels("input").inc(max(input, 0))
        self._tokens.labels("output").inc(max(output, 0))

    def plugin_restart(self, name: str) -> None:
        """Count a restart of gateway plugin `name`."""
        self._plugin_restarts.labels(name).inc()

    def render(self, state: ServerState) -> str:
        """Every metric in the Prometheus text format (version 0.0.4)."""
        live = CollectorRegistry(auto_describe=False)
        live.register(_StateCollector(state))
        return (generate_latest(self.registry) + generate_latest(live)).decode("utf-8")


class _StateCollector(Collector):
    """Reads what the library already counts, at scrape time."""

    def __init__(self, state: ServerState):
        self.state = state

    def collect(self) -> Iterable[Metric]:
        """The live-session, git and agent-cache metrics of `state`."""
        yield self._sessions()
        yield from self._git()
        yield from self._agent_cache()
        yield from self._gateways()
        yield GaugeMetricFamily(
            "duragent_start_time_seconds", "When the server started (Unix time).", value=self.state.started_at
        )

    def _sessions(self) -> Metric:
        counts: Tally[str] = Tally(session.status for session in self.state.sessions.live.values())
        family = GaugeMetricFamily(
            "duragent_live_sessions", "Sessions loaded in this process, by state.", labels=["state"]
        )
        for status in SESSION_STATES:
            family.add_metric([status], counts[status])
        return family

    def _git(self) -> Iterable[Metric]:
        # Only a committer already running: reading `Workspace.committer` would start one, which
        # does git work (committing offline edits) on the event loop in the middle of a scrape.
        committer: Committer | None = vars(self.state.workspace).get("committer")
        if committer is None and not self.state.config.git.enabled:
            return
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

    def _gateways(self) -> Iterable[Metric]:
        if self.state.gateways is None:
            return
        family = GaugeMetricFamily(
            "duragent_plugin_up",
            "Gateway plugins by state (1 for the current state; crash_loop means it gave up restarting).",
            labels=["gateway", "state"],
        )
        for status in self.state.gateways.statuses():
            family.add_metric([status.name, status.state], 1)
        yield family

    def _agent_cache(self) -> Iterable[Metric]:
        stats = self.state.agents.stats
        yield CounterMetricFamily(
            "duragent_agent_cache_hits", "Agent lookups served from the cache.", value=stats.hits
        )
        yield CounterMetricFamily(
            "duragent_agent_cache_misses", "Agent lookups that read the agent's files.", value=stats.misses
        )
        yield CounterMetricFamily(
            "duragent_agent_cache_evictions",
            "Loaded agents dropped from the LRU cache.",
            value=stats.evictions,
        )
        yield GaugeMetricFamily("duragent_agents_loaded", "Agent specs in the cache.", value=stats.loaded)
