"""HTTP route modules: each maps a group of paths to plain `async def` handlers over the library.

The tables below are every API route but the health ones (`health.add_routes`, which `/readyz`
needs): method, path and handler as `"module:function"`, registered with
`duragent.server.lazy_routes`, so a module is imported on the first request of one of its routes
rather than at every start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from duragent.server.lazy_routes import Route

_AGENTS = "duragent.server.routes.agents"
_SESSIONS = "duragent.server.routes.sessions"
_ARTIFACTS = "duragent.server.routes.artifacts"
_OPENAI = "duragent.server.openai.routes"
_SCHEDULES = "duragent.server.routes.schedules"
_ADMIN = "duragent.server.routes.admin"
_ARTIFACT_PATH = "/api/v1/sessions/{session_id}/artifacts"

#: The routes of `/api/v1` and the OpenAI-compatible `/v1`.
API_ROUTES: tuple[Route, ...] = (
    ("GET", "/api/v1/agents", f"{_AGENTS}:list_agents"),
    ("GET", "/api/v1/agents/{name}", f"{_AGENTS}:get_agent"),
    ("POST", "/api/v1/sessions", f"{_SESSIONS}:create_session"),
    ("GET", "/api/v1/sessions", f"{_SESSIONS}:list_sessions"),
    ("GET", "/api/v1/sessions/{session_id}", f"{_SESSIONS}:get_session"),
    ("DELETE", "/api/v1/sessions/{session_id}", f"{_SESSIONS}:delete_session"),
    ("GET", "/api/v1/sessions/{session_id}/messages", f"{_SESSIONS}:list_messages"),
    ("POST", "/api/v1/sessions/{session_id}/messages", f"{_SESSIONS}:send_message"),
    ("POST", "/api/v1/sessions/{session_id}/stream", f"{_SESSIONS}:stream_message"),
    ("GET", "/api/v1/sessions/{session_id}/events", f"{_SESSIONS}:follow_events"),
    ("POST", "/api/v1/sessions/{session_id}/approve", f"{_SESSIONS}:approve"),
    ("POST", "/api/v1/sessions/{session_id}/cancel", f"{_SESSIONS}:cancel"),
    ("POST", "/api/v1/sessions/{session_id}/resume", f"{_SESSIONS}:resume_session"),
    ("POST", "/api/v1/sessions/{session_id}/retry", f"{_SESSIONS}:retry_turn"),
    ("POST", "/api/v1/sessions/{session_id}/end", f"{_SESSIONS}:end_session"),
    ("GET", _ARTIFACT_PATH, f"{_ARTIFACTS}:list_artifacts"),
    ("GET", _ARTIFACT_PATH + "/{name:.+}", f"{_ARTIFACTS}:download_artifact"),
    ("GET", "/v1/models", f"{_OPENAI}:list_models"),
    ("GET", "/v1/models/{model}", f"{_OPENAI}:get_model"),
    ("POST", "/v1/chat/completions", f"{_OPENAI}:chat_completions"),
    ("POST", "/v1/responses", f"{_OPENAI}:responses_route"),
    ("GET", "/api/v1/schedules", f"{_SCHEDULES}:list_schedules"),
    ("POST", "/api/v1/schedules", f"{_SCHEDULES}:create_schedule"),
    ("GET", "/api/v1/schedules/{schedule_id}", f"{_SCHEDULES}:get_schedule"),
    ("DELETE", "/api/v1/schedules/{schedule_id}", f"{_SCHEDULES}:delete_schedule"),
    ("POST", "/api/v1/schedules/{schedule_id}/run", f"{_SCHEDULES}:run_schedule"),
    ("POST", "/api/v1/schedules/{schedule_id}/pause", f"{_SCHEDULES}:pause_schedule"),
    ("POST", "/api/v1/schedules/{schedule_id}/resume", f"{_SCHEDULES}:resume_schedule"),
)

#: The routes of `/api/admin/v1` (registered only when `admin.enabled`).
ADMIN_ROUTES: tuple[Route, ...] = (
    ("POST", "/api/admin/v1/shutdown", f"{_ADMIN}:shutdown"),
    ("POST", "/api/admin/v1/reload-agents", f"{_ADMIN}:reload_agents"),
    ("GET", "/api/admin/v1/agents", f"{_ADMIN}:list_agents"),
    ("POST", "/api/admin/v1/agents", f"{_ADMIN}:deploy_agent"),
    ("GET", "/api/admin/v1/agents/{name}", f"{_ADMIN}:get_agent"),
    ("PUT", "/api/admin/v1/agents/{name}", f"{_ADMIN}:replace_agent"),
    ("DELETE", "/api/admin/v1/agents/{name}", f"{_ADMIN}:remove_agent"),
    ("GET", "/api/admin/v1/gateways", "duragent.server.routes.gateways:list_gateways"),
    ("GET", "/api/admin/v1/processes", "duragent.server.routes.processes:list_processes"),
    ("GET", "/api/admin/v1/processes/{handle}", "duragent.server.routes.processes:get_process"),
    ("POST", "/api/admin/v1/processes/{handle}/kill", "duragent.server.routes.processes:kill_process"),
    ("GET", "/api/admin/v1/mcp", "duragent.server.routes.mcp:list_mcp_servers"),
    ("GET", "/api/admin/v1/schedules", f"{_SCHEDULES}:admin_list_schedules"),
)
