"""What the running server shares between handlers, stored on the app under one typed key."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from duragent.agents.registry import AgentRegistry
    from duragent.cluster.requests import OwnerRequests
    from duragent.config import DuragentConfig
    from duragent.gateways.service import GatewayService
    from duragent.processes.manager import ProcessManager
    from duragent.runtime.approvals import ApprovalBroker
    from duragent.scheduling.service import Scheduler
    from duragent.server.metrics import Metrics
    from duragent.sessions.manager import SessionManager
    from duragent.workspace import Workspace


#: How many message requests may be read, matched to their session and queued at once.
ACCEPTING_AT_ONCE = 4


@dataclass
class ServerState:
    """The library objects one server process works through (built in `create_app`'s lifecycle)."""

    config: DuragentConfig
    workspace: Workspace
    agents: AgentRegistry
    sessions: SessionManager
    approvals: ApprovalBroker
    metrics: Metrics
    started_at: float = field(default_factory=time.time)
    #: Seconds between SSE keep-alive comments.
    keep_alive: float = 15.0
    #: How long running turns get to reach a safe point when the server stops.
    shutdown_grace: float = 10.0
    #: Set when a shutdown was asked for (SIGTERM, SIGINT or POST /api/admin/v1/shutdown).
    shutdown: asyncio.Event = field(default_factory=asyncio.Event)
    #: Gateway plugins and their router (set in `create_app`'s lifecycle; None without plugins).
    gateways: GatewayService | None = None
    #: Schedules: the timer that fires them and the store behind it (set in the lifecycle).
    schedules: Scheduler | None = None
    #: Background processes agents started (set in the lifecycle).
    processes: ProcessManager | None = None
    #: Message requests being accepted at once (`routes.sessions._accept`).
    accepting: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(ACCEPTING_AT_ONCE))
    #: On workers sharing PostgreSQL: hands requests for a session another worker runs to that worker.
    owner_requests: OwnerRequests | None = None


STATE = web.AppKey("duragent_state", ServerState)
