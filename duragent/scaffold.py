"""Create a workspace: `duragent.yaml`, the `.duragent/` data directory, a first agent, a git repo.

The CLI (`duragent init`, `duragent agent create`) is a thin shell over this module. Files come
from `duragent/templates/` (shipped in the wheel) with `{{placeholder}}`s filled by plain
replacement; placeholders this module does not know (such as `{{date}}`, which the runtime
fills on every turn) are left as they are. Nothing that exists is overwritten unless `force`,
and then only after a `.bak` copy is saved.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from duragent.access_tokens import ensure_tokens
from duragent.errors import DuragentError, UsageError
from duragent.gateways.setup import ChatSetup, access_block, gateways_config_block
from duragent.private_data_dir import make_data_dir
from duragent.processes.output import OUTPUT_GITIGNORE

if TYPE_CHECKING:
    import git

#: Default model per provider, used when the user does not name one.
DEFAULT_MODELS: dict[str, str] = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-sonnet-4-20250514",
    "openrouter": "anthropic/claude-sonnet-4",
    "ollama": "llama3.2",
    "demo": "demo",
}
PROVIDERS = tuple(DEFAULT_MODELS)

#: Provider chosen when its variable is set, in this order of preference.
_KEY_VARIABLES = (
    ("openai", "OPENAI_API_KEY"),
    ("anthropic", "ANTHROPIC_API_KEY"),
    ("openrouter", "OPENROUTER_API_KEY"),
)
_OLLAMA_PROBE_SECONDS = 0.3
GIT_AUTHOR_NAME = "Duragent"
GIT_AUTHOR_EMAIL = "duragent@localhost"

#: Template file -> path written, relative to the agent folder.
_AGENT_TEMPLATES = (
    ("agent/agent.yaml", "agent.yaml"),
    ("agent/SOUL.md", "SOUL.md"),
    ("agent/SYSTEM_PROMPT.md", "SYSTEM_PROMPT.md"),
    ("agent/INSTRUCTIONS.md", "INSTRUCTIONS.md"),
)
_SCHEMAS = ("agent.schema.json", "config.schema.json")
_EMPTY_DIRS = ("sessions", "artifacts")


class WorkspaceNotCreated(DuragentError):
    """`init` could not write the workspace's files (the operating system's reason is kept)."""

    def __init__(self, root: Path, error: OSError) -> None:
        where = f" ({error.filename})" if error.filename and Path(error.filename) != root else ""
        super().__init__(
            f"cannot create the workspace in {root}: {error.strerror or error}{where}; "
            "pick a folder you can write to (files already written are kept, and a rerun skips them)"
        )


@dataclass(frozen=True)
class FileAction:
    """What happened to one file: created, left alone because it existed, or rewritten."""

    path: Path
    action: Literal["created", "skipped", "overwritten"]
    backup: Path | None = None


@dataclass(frozen=True)
class ProviderChoice:
    """The model provider a new agent uses, and why it was chosen."""

    provider: str
    model: str
    reason: str


@dataclass(frozen=True)
class InitResult:
    """Everything `init_workspace` did, for the CLI to report."""

    root: Path
    data_dir: Path
    agent: str
    provider: ProviderChoice
    files: list[FileAction]
    git_initialised: bool
    commit: str | None


def detect_provider(
    env: Mapping[str, str] | None = None, *, ollama_url: str = "http://127.0.0.1:11434"
) -> ProviderChoice:
    """Pick a provider from API keys in `env`, then a local Ollama, else the offline `demo`."""
    env = os.environ if env is None else env
    for provider, variable in _KEY_VARIABLES:
        if env.get(variable):
            return ProviderChoice(provider, DEFAULT_MODELS[provider], f"{variable} is set")
    ollama_models = _ollama_models(ollama_url)
    if ollama_models is not None:
        host = ollama_url.split("://", 1)[-1].rstrip("/")
        return ProviderChoice("ollama", _pick_ollama_model(ollama_models), f"Ollama answers on {host}")
    return ProviderChoice("demo", DEFAULT_MODELS["demo"], "no API key found")


def _ollama_models(url: str) -> list[str] | None:
    """Names of the models a local Ollama has, or None when nothing answers quickly."""
    # An empty ProxyHandler: a proxy from the environment must not see (or slow) a loopback probe.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{url.rstrip('/')}/api/tags", timeout=_OLLAMA_PROBE_SECONDS) as response:
            body = response.read()
    except (OSError, ValueError):
        # URLError, refused connections and timeouts are all OSErrors: no Ollama here.
        return None
    try:
        models = json.loads(body).get("models", [])
        return [str(model["name"]) for model in models if isinstance(model, dict) and "name" in model]
    except (ValueError, AttributeError):
        return []


def _pick_ollama_model(installed: list[str]) -> str:
    """The default model if Ollama has it, else the first model it has, else the default."""
    default = DEFAULT_MODELS["ollama"]
    for name in installed:
        if name == default or name.startswith(f"{default}:"):
            return name
    return installed[0] if installed else default


def template_text(name: str) -> str:
    """The text of a template shipped in `duragent/templates/` (e.g. `agent/SOUL.md`)."""
    return resources.files("duragent").joinpath("templates", *name.split("/")).read_text(encoding="utf-8")


def render(text: str, values: Mapping[str, str]) -> str:
    """Replace each `{{key}}` in `text` with its value; unknown placeholders stay as they are."""
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def write_agent(
    agents_dir: Path,
    name: str,
    *,
    provider: str,
    model: str,
    force: bool = False,
    spec_suffix: str = "",
) -> list[FileAction]:
    """Write `<agents_dir>/<name>/` (agent.yaml and its three prompt files) from the templates.

    `spec_suffix` is appended to agent.yaml (lines indented under `spec:`).
    """
    check_agent_choice(name, provider, model)
    values = {
        "agent_name": name,
        "provider": provider,
        "model": _yaml_scalar(model),
        "model_notes": _model_notes(provider),
    }
    folder = agents_dir / name
    return [
        write_file(
            folder / target,
            render(template_text(source), values) + (spec_suffix if target == "agent.yaml" else ""),
            force=force,
        )
        for source, target in _AGENT_TEMPLATES
    ]


def check_agent_choice(name: str, provider: str, model: str) -> None:
    """Raise InvalidName / UsageError unless an agent can be written with these values."""
    from duragent.agents.spec import check_new_agent_name

    check_new_agent_name(name)
    if provider not in PROVIDERS:
        raise UsageError(f"unknown provider {provider!r}: choose one of {', '.join(PROVIDERS)}")
    if not model.strip() or "\n" in model:
        raise UsageError(f"invalid model name {model!r}")


def _yaml_scalar(value: str) -> str:
    """`value` as a YAML scalar that reads back as the same string (model names may hold ':')."""
    return json.dumps(value) if any(c in value for c in ":#{}[],&*!|>'\"%@`") else value


def _model_notes(provider: str) -> str:
    """Lines under `spec.model` saying where the key comes from, or how to pick a real model."""
    from duragent.agents.spec import DEFAULT_API_KEY_ENV

    variable = DEFAULT_API_KEY_ENV.get(provider)
    if variable:
        return (
            "    # The API key is read from this variable; its value never goes in a file.\n"
            f"    api_key_env: {variable}"
        )
    if provider == "ollama":
        return "    # Ollama needs no key; it is reached on 127.0.0.1:11434 unless base_url says otherwise."
    return (
        "    # demo answers offline, without a language model. For a real model, e.g.:\n"
        "    #   provider: openai\n"
        f"    #   name: {DEFAULT_MODELS['openai']}\n"
        "    #   api_key_env: OPENAI_API_KEY   # then: export OPENAI_API_KEY=..."
    )


def write_file(path: Path, content: str, *, force: bool = False) -> FileAction:
    """Create `path` with `content`; an existing file is skipped, or with `force` backed up and rewritten."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_new(path, content)
        return FileAction(path, "created")
    if not force:
        return FileAction(path, "skipped")
    backup = _free_backup_path(path)
    shutil.copy2(path, backup)
    path.write_text(content, encoding="utf-8")
    return FileAction(path, "overwritten", backup)


def _write_new(path: Path, content: str) -> None:
    # Exclusive create: if something appeared since the existence check, it is not ours to replace.
    with path.open("x", encoding="utf-8") as file:
        file.write(content)


def _free_backup_path(path: Path) -> Path:
    """`<file>.bak`, or `<file>.bak.N` when earlier backups exist (they are never replaced)."""
    candidate = path.with_name(f"{path.name}.bak")
    number = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.bak.{number}")
        number += 1
    return candidate


def init_workspace(
    root: Path,
    *,
    agent: str = "assistant",
    provider: ProviderChoice | None = None,
    git: bool = True,
    force: bool = False,
    gateways: Sequence[ChatSetup] = (),
) -> InitResult:
    """Create `<root>/duragent.yaml` and `<root>/.duragent/` with one agent, then commit it to git."""
    provider = provider or detect_provider()
    # Checked before anything is written, so a bad choice leaves no half-made workspace.
    check_agent_choice(agent, provider.provider, provider.model)
    root = root.expanduser().absolute()
    if root.exists() and not root.is_dir():
        raise UsageError(
            f"{root} is a file, not a folder: name a folder for the workspace (it is created if missing)"
        )
    data_dir = root / ".duragent"
    if not force:  # (--force rewrites duragent.yaml, so the data goes where the new one says)
        _check_config_keeps_data_here(root / "duragent.yaml", data_dir)
    try:
        files = _write_workspace(root, data_dir, agent, provider, force=force, gateways=gateways)
    except OSError as exc:  # a read-only parent, a file where a folder should be, a full disk
        raise WorkspaceNotCreated(root, exc) from exc

    git_initialised, commit = False, None
    if git and git_available():
        changed = [f.path for f in files if f.action != "skipped" and f.path.is_relative_to(data_dir)]
        git_initialised, commit = _commit_data_dir(data_dir, changed, f"init: workspace with agent {agent}")
    return InitResult(root, data_dir, agent, provider, files, git_initialised, commit)


def _check_config_keeps_data_here(config_file: Path, data_dir: Path) -> None:
    """Refuse when an existing duragent.yaml keeps the data or agents elsewhere: the workspace would
    never see what init writes into `data_dir`."""
    from duragent.config import load_config
    from duragent.errors import ConfigError

    if not config_file.is_file():
        return
    try:
        config = load_config(config_file, gateway_variables_later=True)
    except ConfigError:
        return  # its own error shows at the next command; init still leaves the file alone
    if config.data_path.resolve() != data_dir.resolve():
        where = f"data in {config.data_path} (data_dir)"
    elif config.agents_path.resolve() != (data_dir / "agents").resolve():
        where = f"agents in {config.agents_path} (agents.static.path)"
    else:
        return
    raise UsageError(
        f"{config_file} keeps this workspace's {where}, where init does not write: "
        "to add an agent there, run `duragent agent create NAME`"
    )


def _write_workspace(
    root: Path,
    data_dir: Path,
    agent: str,
    provider: ProviderChoice,
    *,
    force: bool,
    gateways: Sequence[ChatSetup],
) -> list[FileAction]:
    """Write duragent.yaml, the agent, its memory and the data directory's skeleton; what each became."""
    # Every conversation, memory and log lives below it: other users of the machine, who cannot
    # read them over the API without the tokens, cannot read them from the disk either.
    make_data_dir(data_dir)
    config_text = template_text("duragent.yaml") + (
        gateways_config_block(gateways, agent) if gateways else ""
    )
    files = [write_file(root / "duragent.yaml", config_text, force=force)]
    files += write_agent(
        data_dir / "agents",
        agent,
        provider=provider.provider,
        model=provider.model,
        force=force,
        spec_suffix=access_block(gateways) if gateways else "",
    )
    files.append(write_long_term_memory(data_dir / "memory", agent))
    files += [_keep_empty_dir(data_dir / name) for name in _EMPTY_DIRS]
    files += _copy_schemas(data_dir / "schemas", force=force)
    files.append(write_file(data_dir / ".gitignore", template_text("data.gitignore"), force=force))
    # (in the first commit: else the server's first start commits it, a history's odd first entry)
    files.append(write_file(data_dir / "processes" / ".gitignore", OUTPUT_GITIGNORE, force=force))
    # The API and admin tokens the workspace's server requires and its clients send (0600, ignored).
    ensure_tokens(data_dir)
    return files


def write_long_term_memory(memory_dir: Path, agent: str) -> FileAction:
    """Write the agent's `MEMORY.md` from the template, unless it has one."""
    memory = render(template_text("memory/MEMORY.md"), {"agent_name": agent})
    # (never rewritten, even with force: what the agent and its person wrote there is not a template)
    return write_file(memory_dir / agent / "MEMORY.md", memory)


def _keep_empty_dir(folder: Path) -> FileAction:
    """Create `folder` with a `.gitkeep` so git tracks it while it is empty."""
    folder.mkdir(parents=True, exist_ok=True)
    keep = folder / ".gitkeep"
    if keep.exists():
        return FileAction(keep, "skipped")
    if any(folder.iterdir()):
        # The folder already holds data; git tracks it without a marker.
        return FileAction(keep, "skipped")
    keep.touch()
    return FileAction(keep, "created")


def _copy_schemas(target: Path, *, force: bool) -> list[FileAction]:
    """Copy the JSON Schemas shipped in `duragent/schemas/` (for editor completion), if present."""
    shipped = resources.files("duragent").joinpath("schemas")
    actions = []
    for name in _SCHEMAS:
        source = shipped.joinpath(name)
        if source.is_file():
            actions.append(write_file(target / name, source.read_text(encoding="utf-8"), force=force))
    return actions


def git_available() -> bool:
    """True when a `git` executable is on PATH (GitPython cannot work without one)."""
    return shutil.which("git") is not None


def _commit_data_dir(data_dir: Path, changed: list[Path], message: str) -> tuple[bool, str | None]:
    """Make `data_dir` a git repository if it is not one, and commit what init wrote.

    A new repository gets everything in the folder (respecting .gitignore); in an existing one
    only the files init wrote are committed, so a user's own uncommitted edits stay theirs.
    Returns (repository created now, new commit sha or None when there was nothing to commit).
    """
    import git

    try:
        repo = git.Repo(data_dir)
        created = False
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        repo = git.Repo.init(data_dir)
        created = True
    with repo:
        if created:
            repo.git.add("--all", ".")
        elif changed:
            repo.git.add("--", *[str(path.relative_to(data_dir)) for path in changed])
        if not _has_staged_changes(repo):
            return created, None
        # The identity is given explicitly so init works before the user has configured git;
        # hooks and signing are the user's tools for their own commits, not for this one.
        identity = {
            "GIT_AUTHOR_NAME": GIT_AUTHOR_NAME,
            "GIT_AUTHOR_EMAIL": GIT_AUTHOR_EMAIL,
            "GIT_COMMITTER_NAME": GIT_AUTHOR_NAME,
            "GIT_COMMITTER_EMAIL": GIT_AUTHOR_EMAIL,
        }
        repo.git.commit("--no-verify", "--no-gpg-sign", "--quiet", "-m", message, env=identity)
        return created, repo.head.commit.hexsha


def _has_staged_changes(repo: git.Repo) -> bool:
    """True when the index differs from HEAD (or holds anything, before the first commit)."""
    if not repo.head.is_valid():
        return bool(repo.git.ls_files("--cached"))
    return bool(repo.git.diff("--cached", "--name-only"))
