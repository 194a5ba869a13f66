"""`duragent init`: create a workspace (duragent.yaml, .duragent/ with one agent, a git repo)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from duragent.scaffold import InitResult, ProviderChoice, TelegramSetup


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
) -> None:
    """Create duragent.yaml and .duragent/ with a first agent; existing files are left alone."""
    from duragent.scaffold import init_workspace

    interactive = not yes and sys.stdin.isatty() and sys.stdout.isatty()
    if interactive:
        agent, choice = _ask(agent, provider, model)
    else:
        agent, choice = agent or "assistant", _choose_provider(provider, model)
    wants_telegram = telegram or telegram_owner is not None
    setup = _telegram_setup(wants_telegram, telegram_owner, telegram_token_var, interactive=interactive)
    result = init_workspace(
        directory, agent=agent, provider=choice, git=not no_git, force=force, telegram=setup
    )
    _report(result, git_wanted=not no_git)
    if setup is not None:
        _report_telegram(result, setup)


def _telegram_setup(
    wanted: bool, owner: str | None, token_variable: str, *, interactive: bool
) -> TelegramSetup | None:
    """The Telegram choices from the flags, asking for what is missing when at a terminal."""
    from duragent.errors import UsageError
    from duragent.scaffold import TelegramSetup

    # Only --telegram opens the questions, so plain `duragent init` asks what it always asked.
    if not wanted:
        return None
    if interactive:
        from rich.prompt import Prompt

        token_variable = Prompt.ask("Environment variable holding the bot token", default=token_variable)
        while owner is None:
            answer = Prompt.ask("Your Telegram user id (message @userinfobot to see it)").strip()
            try:
                return TelegramSetup(owner_id=answer, token_variable=token_variable)
            except UsageError as exc:
                print(exc)
    if owner is None:
        raise UsageError(
            "--telegram needs --telegram-owner USER_ID: the bot answers only its owner "
            "(message @userinfobot on Telegram to see your id)"
        )
    return TelegramSetup(owner_id=owner.strip(), token_variable=token_variable)


def _report_telegram(result: InitResult, setup: TelegramSetup) -> None:
    config = result.root / "duragent.yaml"
    skipped = any(f.path == config and f.action == "skipped" for f in result.files)
    print(f"Telegram: the bot answers direct messages from user {setup.owner_id} only.")
    if skipped:
        print("  duragent.yaml already existed and was left alone; add this to it:")
        print(setup.config_block(result.agent))
    print(
        "  1. Create the bot with @BotFather and keep its token in the environment:\n"
        f"       export {setup.token_variable}=123456:ABC...\n"
        "  2. Install the plugin: pip install 'duragent[telegram]'\n"
        "  3. Run: duragent serve   (docs/gateways.md has a systemd unit for a home server)"
    )


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
    _report_next_steps(result)


def _report_provider(result: InitResult) -> None:
    choice = result.provider
    print(f"Provider: {choice.provider}, model {choice.model} ({choice.reason}).")
    if choice.provider == "demo":
        agent_file = _relative(result.data_dir / "agents" / result.agent / "agent.yaml", result.root)
        print(
            "  demo answers offline without a language model. For a real one, set an API key\n"
            "  (e.g. export OPENAI_API_KEY=...) and edit spec.model in "
            f"{agent_file}\n  (provider: openai, name: gpt-4o-mini, api_key_env: OPENAI_API_KEY)."
        )


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
        print(f"  cd {_relative(result.root, Path.cwd().absolute())}")
    print(f"  duragent agent show {result.agent}")
    print("  duragent doctor")


def _relative(path: Path, base: Path) -> str:
    """`path` relative to `base` when it is inside it, else absolute."""
    return str(path.relative_to(base)) if path.is_relative_to(base) else str(path)
