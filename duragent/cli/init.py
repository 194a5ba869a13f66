"""`duragent init`: create a workspace (duragent.yaml, .duragent/ with one agent, a git repo)."""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from duragent.gateways.setup import ChatSetup
    from duragent.scaffold import InitResult, ProviderChoice


def register(app: typer.Typer) -> None:
    """Add the `init` command to `app`."""
    app.command("init")(init)


def init(
    directory: Annotated[
        Path,
        typer.Argument(metavar="DIR", help="Workspace directory (created if missing).", show_default="."),
    ] = Path("."),
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Accept every default; ask nothing.")] = False,
    agent: Annotated[str | None, typer.Option("--agent", help="Name of the first agent.")] = None,
    provider: Annotated[
        str | None,
        typer.Option("--provider", help="openai, anthropic, openrouter, ollama or demo (default: detected)."),
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="Model name (default: per provider).")] = None,
    no_git: Annotated[
        bool, typer.Option("--no-git", help="Do not make .duragent/ a git repository.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Rewrite existing template files, keeping .bak copies.")
    ] = False,
    telegram: Annotated[
        bool, typer.Option("--telegram", help="Set up a Telegram bot answering only its owner.")
    ] = False,
    telegram_owner: Annotated[
        str | None,
        typer.Option(
            "--telegram-owner", metavar="USER_ID", help="Your Telegram user id (implies --telegram)."
        ),
    ] = None,
    telegram_token_var: Annotated[
        str,
        typer.Option(
            "--telegram-token-var", metavar="VAR", help="Environment variable holding the bot token."
        ),
    ] = "TELEGRAM_BOT_TOKEN",
    discord: Annotated[
        bool, typer.Option("--discord", help="Set up a Discord bot answering only its owner.")
    ] = False,
    discord_owner: Annotated[
        str | None,
        typer.Option("--discord-owner", metavar="USER_ID", help="Your Discord user id (implies --discord)."),
    ] = None,
    discord_token_var: Annotated[
        str,
        typer.Option(
            "--discord-token-var", metavar="VAR", help="Environment variable holding the Discord bot token."
        ),
    ] = "DISCORD_BOT_TOKEN",
    slack: Annotated[
        bool, typer.Option("--slack", help="Set up a Slack app (Socket Mode) answering only its owner.")
    ] = False,
    slack_owner: Annotated[
        str | None,
        typer.Option("--slack-owner", metavar="MEMBER_ID", help="Your Slack member id (implies --slack)."),
    ] = None,
    slack_token_var: Annotated[
        str,
        typer.Option(
            "--slack-token-var", metavar="VAR", help="Environment variable holding the xoxb- bot token."
        ),
    ] = "SLACK_BOT_TOKEN",
    slack_app_token_var: Annotated[
        str,
        typer.Option(
            "--slack-app-token-var",
            metavar="VAR",
            help="Environment variable holding the xapp- app-level token (Socket Mode).",
        ),
    ] = "SLACK_APP_TOKEN",
) -> None:
    """Create duragent.yaml and .duragent/ with a first agent; existing files are left alone."""
    from duragent.gateways.setup import DiscordSetup, SlackSetup, TelegramSetup
    from duragent.scaffold import init_workspace

    interactive = not yes and sys.stdin.isatty() and sys.stdout.isatty()
    if interactive:
        with _asking():
            agent, choice = _ask(agent, provider, model)
    else:
        agent, choice = agent or "assistant", _choose_provider(provider, model)
    wanted: list[tuple[type[ChatSetup], str | None, dict[str, str]]] = []
    if telegram or telegram_owner is not None:
        wanted.append((TelegramSetup, telegram_owner, {"token_variable": telegram_token_var}))
    if discord or discord_owner is not None:
        wanted.append((DiscordSetup, discord_owner, {"token_variable": discord_token_var}))
    if slack or slack_owner is not None:
        variables = {"token_variable": slack_token_var, "app_token_variable": slack_app_token_var}
        wanted.append((SlackSetup, slack_owner, variables))
    with _asking():
        setups = [
            _chat_setup(kind, owner, variables, interactive=interactive) for kind, owner, variables in wanted
        ]
    if force and not no_git:
        _commit_hand_edits(directory)
    result = init_workspace(
        directory, agent=agent, provider=choice, git=not no_git, force=force, gateways=setups
    )
    _report(result, git_wanted=not no_git)
    if setups:
        _report_gateways(result, setups)


@contextlib.contextmanager
def _asking() -> Iterator[None]:
    """Ctrl-C at a question leaves as `send` does: `Aborted!` on a line of its own (not glued to
    the shell's next prompt), status 130, nothing written."""
    try:
        yield
    except KeyboardInterrupt:
        print("\nAborted!", file=sys.stderr)
        raise typer.Exit(130) from None


def _chat_setup(
    kind: type[ChatSetup], owner: str | None, variables: dict[str, str], *, interactive: bool
) -> ChatSetup:
    """One platform's choices from the flags, asking for what is missing when at a terminal."""
    from duragent.errors import UsageError

    # Only --telegram/--discord/--slack open these questions, so plain `init` asks what it always asked.
    if interactive:
        from rich.prompt import Prompt

        variables = {
            key: Prompt.ask(f"Environment variable for {kind.title}'s {key.replace('_', ' ')}", default=value)
            for key, value in variables.items()
        }
        while owner is None:
            answer = Prompt.ask(f"Your {kind.title} user id ({kind.owner_hint})").strip()
            try:
                return kind(owner_id=answer, **variables)
            except UsageError as exc:
                print(exc)
    if owner is None:
        flag = f"--{kind.platform}-owner"
        raise UsageError(
            f"--{kind.platform} needs {flag} USER_ID: the bot answers only its owner ({kind.owner_hint})"
        )
    return kind(owner_id=owner.strip(), **variables)


_TOKEN_STEPS = {
    "telegram": "Create the bot with @BotFather and keep its token in the environment",
    "discord": "Create an application with a bot in the Discord Developer Portal, turn on its Message "
    "Content intent, and keep the bot token in the environment",
    "slack": "Create a Slack app with Socket Mode on (docs/gateways.md lists the scopes and events), "
    "install it, and keep both tokens in the environment",
}
_TOKEN_EXAMPLES = {"telegram": "123456:ABC...", "discord": "MTA...", "slack": "xoxb-..."}


def _report_gateways(result: InitResult, setups: list[ChatSetup]) -> None:
    from duragent.gateways.setup import access_block, gateways_config_block

    config = result.root / "duragent.yaml"
    agent_file = result.data_dir / "agents" / result.agent / "agent.yaml"
    skipped = any(f.path == config and f.action == "skipped" for f in result.files)
    agent_skipped = any(f.path == agent_file and f.action == "skipped" for f in result.files)
    owners = " and ".join(f"{setup.title} user {setup.owner_id}" for setup in setups)
    if agent_skipped and not _lets_in(agent_file, [setup.owner_id for setup in setups]):
        # (its access list is what lets the owners in: without it the bot answers nobody)
        print(
            f"{_relative(agent_file, result.root)} already existed and was left alone: the bot answers "
            f"nobody until you add this under its `spec:` (direct messages from {owners} only):"
        )
        print(access_block(setups))
    else:
        for setup in setups:
            print(f"{setup.title}: the bot answers direct messages from user {setup.owner_id} only.")
    if skipped:
        print("  duragent.yaml already existed and was left alone; add this to it:")
        print(gateways_config_block(setups, result.agent))
    step = 1
    for setup in setups:
        print(f"  {step}. {_TOKEN_STEPS[setup.platform]}:")
        for variable in setup.variables():
            example = "xapp-..." if variable != setup.token_variable else _TOKEN_EXAMPLES[setup.platform]
            print(f"       export {variable}={example}")
        step += 1
    extras = ",".join(setup.platform for setup in setups)
    print(f"  {step}. Install the plugins: pip install 'duragent[{extras}]'")
    print(f"  {step + 1}. Run: duragent serve   (docs/gateways.md has a systemd unit for a home server)")


def _choose_provider(provider: str | None, model: str | None) -> ProviderChoice:
    """The provider from the command line, or the detected one; the model likewise."""
    from duragent.scaffold import DEFAULT_MODELS, ProviderChoice, detect_provider

    if provider is None:
        detected = detect_provider()
        return ProviderChoice(detected.provider, model or detected.model, detected.reason)
    return ProviderChoice(provider, model or DEFAULT_MODELS.get(provider, provider), "chosen with --provider")


def _ask(agent: str | None, provider: str | None, model: str | None) -> tuple[str, ProviderChoice]:
    """Ask for whatever the command line left open, offering the detected choices as defaults."""
    from rich.prompt import Prompt

    from duragent.errors import InvalidName
    from duragent.ids import check_name
    from duragent.scaffold import DEFAULT_MODELS, PROVIDERS, ProviderChoice, detect_provider

    while agent is None:
        answer = Prompt.ask("Agent name", default="assistant")
        try:
            agent = check_name(answer, "agent name")
        except InvalidName as exc:
            print(exc)
    detected = detect_provider() if provider is None else None
    if provider is None:
        assert detected is not None
        print(f"Detected provider: {detected.provider} ({detected.reason})")
        provider = Prompt.ask("Provider", choices=list(PROVIDERS), default=detected.provider)
    if model is None:
        suggested = detected.model if detected and detected.provider == provider else None
        model = Prompt.ask("Model", default=suggested or DEFAULT_MODELS.get(provider, provider))
    reason = detected.reason if detected and detected.provider == provider else "chosen at the prompt"
    return agent, ProviderChoice(provider, model, reason)


def _commit_hand_edits(directory: Path) -> None:
    """Commit a person's edits made while no server ran before `--force` rewrites the files: git
    history, not only a `.bak` copy, keeps what they had written."""
    from duragent.config import load_config
    from duragent.errors import DuragentError
    from duragent.workspace import Workspace

    config_file = directory.expanduser() / "duragent.yaml"
    if not config_file.is_file():
        return
    try:
        Workspace(load_config(config_file, gateway_variables_later=True)).commit_offline_edits()
    except DuragentError as error:  # a broken duragent.yaml, a repository mid-rebase: the .bak stays
        print(f"could not commit your edits before rewriting the files: {error}", file=sys.stderr)


def _report(result: InitResult, *, git_wanted: bool) -> None:
    """Say what was created and left alone, which provider and why, and what to run next."""
    from duragent.scaffold import git_available

    changed = [f for f in result.files if f.action != "skipped"]
    print(f"Workspace: {result.root}")
    for action in result.files:
        shown = _relative(action.path, result.root)
        if action.action == "created":
            print(f"  created      {shown}")
        elif action.action == "overwritten":
            print(
                f"  overwritten  {shown} (previous version saved as {action.backup and action.backup.name})"
            )
        else:
            print(f"  skipped      {shown} (exists, left alone)")
    if not changed:
        print("Nothing changed: every file already exists. Use --force to rewrite them (with .bak copies).")
    _report_provider(result)
    _report_git(result, git_wanted=git_wanted, git_found=git_available())
    _report_nesting(result)
    _report_next_steps(result)


def _report_nesting(result: InitResult) -> None:
    """A workspace made inside another one (`init` run in a subfolder of it, meaning to add an
    agent, say) takes over every command run under it: say so, it is easily done by mistake."""
    from duragent.discovery import find_config

    outer = find_config(result.root.parent)
    if outer is not None:
        here = Path.cwd().absolute()
        where = "this folder" if result.root == here else _relative(result.root, here)
        print(
            f"Note: this workspace is inside the one of {_relative(outer, here)}; commands run in "
            f"{where} or below now use this one. To add an agent to that workspace instead: "
            "duragent agent create NAME, from there."
        )


def _report_provider(result: InitResult) -> None:
    agent_file = result.data_dir / "agents" / result.agent / "agent.yaml"
    if any(f.path == agent_file and f.action == "skipped" for f in result.files):
        # the agent is as it was: the provider detected now is not the one it uses
        shown = _relative(agent_file, result.root)
        print(f"Model: {_model_in(agent_file)}, as {shown} says (left alone).")
        return
    choice = result.provider
    print(f"Provider: {choice.provider}, model {choice.model} ({choice.reason}).")
    from duragent.agents.spec import DEFAULT_API_KEY_ENV

    variable = DEFAULT_API_KEY_ENV.get(choice.provider)
    if variable and not os.environ.get(variable):
        # chosen with --provider or at the prompt: the first `send` would fail on the missing key
        print(
            f"  {variable} is not set: export {variable}=... in the shell you run duragent from\n"
            "  (agent.yaml names the variable; its value stays in the environment)."
        )
    if choice.provider == "demo":
        print(
            "  demo answers offline without a language model. For a real one, set an API key\n"
            "  (e.g. export OPENAI_API_KEY=...) and edit spec.model in "
            f"{_relative(agent_file, result.root)}\n"
            "  (provider: openai, name: gpt-4o-mini, api_key_env: OPENAI_API_KEY)."
        )


def _lets_in(agent_file: Path, owners: list[str]) -> bool:
    """Whether an existing agent.yaml's direct-message allowlist holds every one of `owners`
    (an `init --telegram` run again over its own workspace: nothing to add)."""
    try:
        dm = _agent_document(agent_file)["spec"]["access"]["dm"]
        allowed = {str(entry) for entry in dm["allowlist"]}
        # (`disabled` answers nobody, `open` everyone: only an allowlist is "the owners only")
        policy = dm.get("policy", "allowlist")
    except (KeyError, TypeError, AttributeError):
        return False
    return policy == "allowlist" and all(owner in allowed for owner in owners)


def _model_in(agent_file: Path) -> str:
    """`provider/name` of the model an existing agent.yaml names (what it says, unchecked)."""
    try:
        model = _agent_document(agent_file)["spec"]["model"]
        return f"{model['provider']}/{model['name']}"
    except (KeyError, TypeError):
        return "not readable (duragent agent validate says why)"


def _agent_document(agent_file: Path) -> Any:
    """An existing agent.yaml as plain data, in the full form whichever form it is written in;
    None when it cannot be read or parsed (its uses then find nothing in it)."""
    import yaml

    from duragent.agents.spec import is_shorthand, normalise_shorthand

    try:
        document = yaml.safe_load(agent_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return normalise_shorthand(document) if is_shorthand(document) else document


def _report_git(result: InitResult, *, git_wanted: bool, git_found: bool) -> None:
    data_dir = _relative(result.data_dir, result.root)
    if not git_wanted:
        print(f"Git: skipped (--no-git); {data_dir}/ is not version-controlled.")
    elif not git_found:
        print(f"Git: not installed, so {data_dir}/ is not a repository. Install git and run init again.")
    elif result.commit:
        created = "new repository, " if result.git_initialised else ""
        subject = f"init: workspace with agent {result.agent}"
        print(f"Git: {data_dir}/ {created}commit {result.commit[:7]} ({subject}).")
    else:
        print(f"Git: {data_dir}/ is a repository; nothing new to commit.")


def _report_next_steps(result: InitResult) -> None:
    print("Next:")
    if result.root != Path.cwd().absolute():
        print(f"  cd {_shell_word(_relative(result.root, Path.cwd().absolute()))}")
    # With several agents `send` and `chat` need to be told which one (else they stop and ask).
    pick = f" --agent {result.agent}" if _agent_count(result.data_dir) > 1 else ""
    print(f'  duragent send{pick} "hello"          # or `duragent chat{pick}` to talk')
    print(f"  duragent agent show {result.agent}")
    print("  duragent doctor")


def _agent_count(data_dir: Path) -> int:
    """How many agent folders (with an agent.yaml) the workspace's agents folder holds."""
    return sum(1 for folder in (data_dir / "agents").glob("*/agent.yaml"))


def _shell_word(path: str) -> str:
    """`path` quoted for a shell when it needs it (spaces, quotes), keeping a leading `~/` expandable."""
    if path.startswith("~/"):
        return "~/" + shlex.quote(path[2:])
    return shlex.quote(path)


def _relative(path: Path, base: Path) -> str:
    """`path` relative to `base` when it is inside it, else `~/...` under the home folder, else absolute."""
    if path.is_relative_to(base):
        return str(path.relative_to(base))
    home = Path.home()
    return f"~/{path.relative_to(home)}" if path.is_relative_to(home) else str(path)
