"""GatewayService: the gateway manager and router started and stopped with `duragent serve`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from duragent.gateways.manager import GatewayManager, GatewayTiming, PluginStatus
from duragent.gateways.protocol import Command
from duragent.gateways.router import GatewayRouter
from duragent.interpolation import referenced_names
from duragent.yaml_source import load_yaml_file

if TYPE_CHECKING:
    from duragent.server.state import ServerState

log = logging.getLogger(__name__)


class GatewayService:
    """Runs every `gateways.external[]` plugin and routes its chats to agents."""

    def __init__(self, state: ServerState, *, timing: GatewayTiming | None = None):
        config = state.config
        self.router = GatewayRouter(
            sessions=state.sessions,
            agent_for=state.agents.get,
            routes=config.routes,
            send=self._send,
            directory_path=config.data_path / "gateways" / "sessions.json",
            artifacts=state.workspace.stores.artifacts,
            shutting_down=state.shutdown.is_set,
            capabilities=self._capabilities,
            redact=state.workspace.guard.redact_value,  # (no key-shaped text at rest in pending.json)
            command_prefix=self._command_prefix,
        )
        self.manager = GatewayManager(
            config.gateways.external,
            self.router.handle,
            base_dir=config.base_dir,
            timing=timing,
            on_restart=state.metrics.plugin_restart,
            admission=self.router.admission,
            # (read again only when there are plugins: a start without any pays nothing)
            variables=variables_behind_gateway_settings(config.source) if config.gateways.external else None,
        )
        self._restored = False

    def _capabilities(self, gateway: str) -> list[str]:
        plugin = self.manager.plugins.get(gateway)
        return plugin.status.capabilities if plugin is not None else []

    def _command_prefix(self, gateway: str) -> str:
        plugin = self.manager.plugins.get(gateway)
        return plugin.status.command_prefix if plugin is not None else ""

    async def _send(self, gateway: str, command: Command) -> object:
        return await self.manager.send(gateway, command)

    async def restore(self) -> None:
        """Follow every chat's session again; call before the server recovers interrupted turns."""
        if not self.manager.plugins or self._restored:
            return
        await self.router.start()
        await self.router.follow_chats()
        self._restored = True

    async def start(self) -> None:
        """Restore the chat -> session map (unless `restore` did), then start the plugins."""
        if not self.manager.plugins:
            return
        if not self._restored:
            await self.router.start()
            self._restored = True
        # After recovery: a turn the restart cut off goes first, these messages queue behind it.
        await self.router.submit_pending()
        self.manager.start()
        log.info("gateways: started %s", ", ".join(self.manager.plugins))

    async def stop(self) -> None:
        """Stop the plugins (SIGTERM, then SIGKILL after the grace period) and detach from sessions."""
        await self.manager.stop()
        await self.router.stop()

    def statuses(self) -> list[PluginStatus]:
        """Every plugin's state, restarts and last error."""
        return self.manager.statuses()

    def problems(self) -> list[str]:
        """Lines for /readyz: plugins that gave up restarting."""
        return [
            f"gateway {s.name}: crash loop, not restarting (last error: {s.last_error})"
            for s in self.statuses()
            if s.state == "crash_loop"
        ]


def variables_behind_gateway_settings(source: Path | None) -> dict[str, dict[str, str]]:
    """Gateway name -> `config:` key -> the environment variable its value was read from, and
    the line setting it (`TELEGRAM_BOT_TOKEN at /home/me/duragent.yaml:12`).

    Plugins get the expanded values only, so a plugin's error names `bot_token` while the user
    set TELEGRAM_BOT_TOKEN; the manager adds the variable to the error it reports. A variable
    the gateway's `env:` sets (`TELEGRAM_BOT_TOKEN: ${HOME_BOT_TOKEN}`) is mapped likewise: the
    plugin names TELEGRAM_BOT_TOKEN, which the user never set.
    """
    if source is None:
        return {}
    try:
        document = load_yaml_file(source, {}, interpolate=False)
        gateways = document.data["gateways"]["external"]
    except Exception:  # only a better error message is lost: the config was loaded already
        return {}
    found: dict[str, dict[str, str]] = {}
    for index, gateway in enumerate(gateways if isinstance(gateways, list) else []):
        if not isinstance(gateway, dict):
            continue
        variables: dict[str, str] = {}
        settings = gateway.get("config")
        for key, value in settings.items() if isinstance(settings, dict) else ():
            names = referenced_names(value) if isinstance(value, str) else set()
            if len(names) == 1:
                where = document.locate(("gateways", "external", index, "config", key))
                variables[str(key)] = f"{names.pop()} at {where.file}:{where.line}"
        passed = gateway.get("env")
        for name, value in passed.items() if isinstance(passed, dict) else ():
            where = document.locate(("gateways", "external", index, "env", name))
            names = referenced_names(value) if isinstance(value, str) else set()
            origin = f"{names.pop()}, in `env:`" if len(names) == 1 else "`env:`"
            variables[str(name)] = f"{origin} at {where.file}:{where.line}"
        found[str(gateway.get("name"))] = variables
    return found
