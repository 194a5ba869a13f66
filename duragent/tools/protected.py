"""Files only a person (or the runtime itself) changes: an agent's definition and policy, the
server's configuration, git's own files and the server's run files.

The file tools refuse to write them whatever the roots and the policy say; a bash command that
names one is never auto-allowed (`runtime.policy`); and a change a tool call made to one is
committed as the agent's, never as the person's (`runtime.loop`).
"""

from __future__ import annotations

import functools
import glob
import itertools
import os
import re
import shlex
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import unquote, urlsplit

#: Names protected wherever they are: the definition and policy files, prompts, the config.
PROTECTED_NAMES = frozenset(
    {
        "agent.yaml",
        "policy.yaml",
        "policy.local.yaml",
        "SOUL.md",
        "SYSTEM_PROMPT.md",
        "INSTRUCTIONS.md",
        "duragent.yaml",
    }
)
#: Folders whose whole content is protected: git's own, and the server's run files (tokens).
PROTECTED_FOLDERS = frozenset({".git", "run"})
#: Run files, protected by name too (bash could reach them from anywhere).
RUN_FILES = frozenset({"tokens.json", "serve.json"})


def protected_reason(path: Path, protected_dirs: Iterable[Path] = ()) -> str | None:
    """Why `path` (absolute, resolved) must not be written by a tool, or None when it may be."""
    if path.name in PROTECTED_NAMES or path.name in RUN_FILES:
        return f"{path.name} is an agent's definition, policy or the server's configuration"
    if ".git" in path.parts:
        return "files under .git belong to git"
    for folder in protected_dirs:
        if path == folder or path.is_relative_to(folder):
            return f"{folder} holds an agent's definition or the server's own files"
    return None


def names_protected_file(command: str, words: Iterable[str] = ()) -> bool:
    """Whether a command line (its text, or any of its lexed `words`) names a protected file."""
    needles = (*PROTECTED_NAMES, *RUN_FILES, ".git")
    return any(needle in text for text in (command, *words) for needle in needles)


#: Glob characters: a word holding one is expanded the way bash would before it is checked.
_GLOB_CHARS = frozenset("*?[")
#: How many matches of one glob are checked: a glob matching more is asked about (where the
#: others lead, a symlink among them, is not known).
_GLOB_MATCHES_CHECKED = 1000
#: Entries of /proc/<pid>/ that hold a process's secrets (the server's environment: its API keys)
#: or lead into its folders and open files. Resolved here they are the server's own (`self` is
#: the server, not the tool), so where they lead for the tool is not known.
_PROC_ENTRIES = frozenset({"environ", "mem", "cwd", "root", "fd", "map_files"})
_CHANGE_DIRECTORY = frozenset({"cd", "pushd"})
#: The characters of the shell's operators (`;`, `&&`, `|`, redirections), as the lexer splits them.
_SHELL_OPERATOR = frozenset("();<>|&")
#: How many words one word's braces may expand to before the word is asked about (bash expands
#: `{a..z}{a..z}` to 676; the ones not checked could name the data directory).
_BRACE_WORDS_CHECKED = 256
#: How many folders a line's relative paths are resolved from (the work folder, `cd` targets,
#: folders its words name); a line naming more is asked about.
_FOLDERS_CHECKED = 64
#: How many symlinks on a path are followed looking for one into /proc (the kernel stops at 40).
_LINKS_FOLLOWED = 40
#: How many letters of a short option word (`-xvzfC../..`) are tried as the start of a glued value.
_GLUED_TAILS_CHECKED = 64
#: Options that make a program read what the symlinks of the folders it walks lead to: a link a
#: cloned repository or an archive left in the work folder (`leak -> ../../run`) is named on no
#: command line, yet `grep -R token .` prints the tokens through it.
_FOLLOWING_OPTIONS: dict[str, frozenset[str]] = {
    **dict.fromkeys(("grep", "egrep", "fgrep"), frozenset({"-R", "--dereference-recursive"})),
    "rg": frozenset({"-L", "--follow"}),
    "tar": frozenset({"-h", "--dereference"}),
    "cp": frozenset({"-L", "--dereference"}),
    "find": frozenset({"-L", "-follow"}),
    "du": frozenset({"-L", "--dereference"}),
    # (diff reads what links lead to unless told `--no-dereference`: `diff -rN repo empty`)
    "diff": frozenset({"-r", "--recursive"}),
    "rsync": frozenset({"-L", "-k", "--copy-links", "--copy-unsafe-links", "--copy-dirlinks"}),
    # (zip stores what a link leads to unless told `-y`)
    "zip": frozenset({"-r", "-R", "--recurse-paths", "--recurse-patterns"}),
}
#: How many entries of the folders such a command walks are looked at for a symlink leading out;
#: past them, the command is asked about.
_WALKED_ENTRIES_CHECKED = 10_000
_BRACE_SEQUENCE = re.compile(r"(?P<first>-?\d+|[A-Za-z])\.\.(?P<last>-?\d+|[A-Za-z])(?:\.\.(?P<step>-?\d+))?")


def reached_outside_workdir(
    command: str, workdir: Path, data_dir: Path | None, *, start: Path | None = None
) -> Path | None:
    """A place a bash command line names that an auto-allowed command must not touch, or None.

    That is the data directory outside the work folder (other agents, sessions, memory, git, the
    run files with the server's tokens), a folder holding it, a protected file, or a process's
    environment, folders or files under /proc. Each word is resolved as bash would see it: from
    the work folder (and from every folder a `cd` in the line goes to), `~` and braces expanded,
    globs matched against the disk, symlinks followed; a value glued to a short option
    (`-C../..`) counts as a word. A glob (`../../run/*`) or a symlink made earlier names
    nothing, but resolves to the tokens all the same. A glob matching more than
    `_GLOB_MATCHES_CHECKED` paths, or braces expanding to more than `_BRACE_WORDS_CHECKED`
    words, returns its folder: where the ones not checked lead is unknown.

    A program told to follow the symlinks of the folders it walks (`grep -R`, `tar -ch`, `zip -r`:
    `_FOLLOWING_OPTIONS`) reads where a link a cloned repository left there leads: the folders the
    line works in are walked for such a link (past `_WALKED_ENTRIES_CHECKED` entries, their
    folder is returned).

    `start` is the folder the command starts in when it is not the work folder (a background
    process's `workdir`): its relative paths lead from there too.

    A glob over a large folder makes this slow (it reads the folder): the runtime calls it in a
    thread, never on the event loop.
    """
    words = shell_tokens(command)
    if words is None:
        return workdir  # unbalanced quotes: bash would refuse it, a person may read it
    data = data_dir.resolve() if data_dir is not None else None  # (once, not for each match)
    try:
        return _first_reached(words, workdir.resolve(), data, start.resolve() if start else None)
    except _TooManyMatches as exc:
        return exc.folder


class _TooManyMatches(Exception):
    """A glob matched more than `_GLOB_MATCHES_CHECKED` paths, or braces expanded to more than
    `_BRACE_WORDS_CHECKED` words (in `folder`)."""

    def __init__(self, folder: Path) -> None:
        super().__init__(f"a word in {folder} stands for more paths than are checked")
        self.folder = folder


def _first_reached(words: list[str], workdir: Path, data: Path | None, start: Path | None) -> Path | None:
    """The first path `words` reach that `_forbidden` refuses, or None (`workdir`, `data`, `start`
    resolved)."""
    linked = _linked_tokens(data)
    if linked is not None:
        return linked
    # (a word is looked at from several folders, and for them too: each once)
    expanded = functools.cache(_expanded)
    bases = _working_folders(words, workdir, expanded, start)
    for word in words:
        for text in _path_texts(word):
            absolute = text.startswith(("/", "~"))  # (the same from every folder: looked at once)
            for base in bases[:1] if absolute else bases:
                for path in expanded(text, base):
                    if _forbidden(path, workdir, data):
                        return path
    if _follows_links_below(words):
        return _link_out_below([base for base in bases if _is_folder(base)], workdir, data)
    return None


def is_the_tokens_file(path: Path, data: Path | None) -> bool:
    """Whether `path` is the server's tokens file under another name (a hard link two archives
    made: its own path is inside the work folder, so no path check sees it)."""
    if data is None:
        return False
    try:
        return os.path.samefile(path, data / "run" / "tokens.json")
    except OSError:
        return False


def _linked_tokens(data: Path | None) -> Path | None:
    """The tokens file when it has a second name (a hard link an archive made through a symlink
    it left, `tar -xf b.tar`), or None: any file of any folder may then hold the tokens."""
    if data is None:
        return None
    tokens = data / "run" / "tokens.json"
    try:
        return tokens if os.stat(tokens).st_nlink > 1 else None
    except OSError:
        return None


def _follows_links_below(words: list[str]) -> bool:
    """Whether a program of the line reads through the symlinks of the folders it walks
    (`grep -R`, `tar -ch`, `zip -r`), by its `_FOLLOWING_OPTIONS`."""
    options: frozenset[str] = frozenset()
    for index, word in enumerate(words):
        program = os.path.basename(word)
        if _is_operator(word) or program in _FOLLOWING_OPTIONS:
            options = _FOLLOWING_OPTIONS.get(program, frozenset())
            following = words[index + 1] if index + 1 < len(words) else "-"
            if program == "tar" and not following.startswith("-") and _given(f"-{following}", options):
                return True  # (`tar chf x .` is `tar -chf x .`)
        elif _given(word, options):
            return True
    return False


def _given(word: str, options: frozenset[str]) -> bool:
    """Whether `word` is one of `options`: itself, `--name=value`, or a letter of a short bundle."""
    if word.startswith("--"):
        return word.split("=", 1)[0] in options
    return word in options or (word.startswith("-") and any(f"-{letter}" in options for letter in word[1:]))


def _link_out_below(folders: list[Path], workdir: Path, data: Path | None) -> Path | None:
    """The first place a symlink below `folders` leads to that `_forbidden` refuses, or None;
    _TooManyMatches past `_WALKED_ENTRIES_CHECKED` entries (where the others lead is unknown)."""
    seen = 0
    # (a folder inside another of them is walked with it, not twice)
    unique = list(dict.fromkeys(folders))
    waiting = [one for one in unique if not any(one != top and one.is_relative_to(top) for top in unique)]
    while waiting:
        folder = waiting.pop()
        try:
            with os.scandir(folder) as entries:
                listed = list(entries)
        except OSError:
            continue  # (the program cannot read it either)
        seen += len(listed)
        if seen > _WALKED_ENTRIES_CHECKED:
            raise _TooManyMatches(folder)
        for entry in listed:
            if entry.is_symlink():
                target = _proc_path(entry.path) or _resolved(entry.path)
                if target is not None and _forbidden(Path(target), workdir, data):
                    return Path(target)
            elif entry.is_dir(follow_symlinks=False):
                waiting.append(Path(entry.path))
    return None


def _resolved(path: str) -> str | None:
    """`path` with its symlinks followed, or None for a loop."""
    try:
        return os.fspath(Path(path).resolve())
    except (OSError, RuntimeError, ValueError):
        return None


def _working_folders(
    words: list[str], workdir: Path, expanded: Callable[[str, Path], list[Path]], start: Path | None = None
) -> list[Path]:
    """The folders the line's relative paths may be read from: the work folder, every folder a
    `cd` goes to, and every folder a word names, since a program may change to it first
    (`tar -C sub -cf - ../../../run`, `make -C`, `env -C`); for `ln`, the folder of each path
    named too (where a link is made). _TooManyMatches beyond `_FOLDERS_CHECKED` of them."""
    bases = [workdir] if start is None or start == workdir else [start, workdir]
    for target in _cd_targets(words):
        bases += [path for base in bases for path in expanded(target, base)]
    named = [
        path
        for word in words
        for text in _path_texts(word)
        if not _GLOB_CHARS.intersection(text)
        for base in list(bases)
        for path in expanded(text, base)
    ]
    bases += [path for path in named if _is_folder(path)]
    if any(os.path.basename(word) == "ln" for word in words):
        # A symlink's target is read from the folder the link is made in, not the command's:
        # `ln -s ../../../../memory d1/d2/m` leads into the data directory from `d1/d2`. (A link
        # made elsewhere is only followed by a command naming it, which is checked then.)
        folders = {path.parent for path in named if path.parent.is_relative_to(workdir)}
        bases += [folder for folder in folders if _is_folder(folder)]
    bases = list(dict.fromkeys(bases))
    if len(bases) > _FOLDERS_CHECKED:
        raise _TooManyMatches(workdir)
    return bases


def _is_folder(path: Path) -> bool:
    """Whether `path` is a folder; a word no path can be (longer than a file name may be:
    `echo yyyy…`) is not one, rather than an OSError that failed the turn."""
    try:
        return path.is_dir()
    except OSError:
        return False


def _cd_targets(words: list[str]) -> list[str]:
    """The folders a `cd` or `pushd` in the line may go to: every word after one up to the next
    operator (`cd -P sub`: which word is the folder is cd's to say), `~` for a bare `cd`.

    Any such word counts, not only a command's first (`if cd x`, `builtin cd x`): a word taken
    for a `cd` wrongly costs a question at most.
    """
    targets: list[str] = []
    for index, word in enumerate(words):
        if word in _CHANGE_DIRECTORY:
            following = itertools.takewhile(lambda w: not _is_operator(w), words[index + 1 :])
            targets += list(following) or ["~"]
    return targets


def _is_operator(word: str) -> bool:
    """Whether a lexed word is a shell operator (`;`, `&&`, `|`, `>`...)."""
    return _SHELL_OPERATOR.issuperset(word)


def _path_texts(word: str) -> set[str]:
    """The texts of `word` a program may take for a path: the word, an option's value after `=`
    (`--file=../x`), a short option's value glued to it (`-C../..`, `tar -xC../..`: every tail
    after the first option letter, since which letters are flags is the program's to say), a
    file a program reads for `@` or `<` (`curl -d @../x`, `-F f=<../x`) and a `file:` URL's path
    (`git clone file:///…`, `curl file:///…/tok%65ns.json`)."""
    texts = {word, word.partition("=")[2]}
    if word.startswith("-") and not word.startswith("--"):
        # (past the first few letters, only tails that leave the folder: a long `-e` pattern
        # would otherwise cost a look at the disk per character)
        tails = range(2, len(word))
        texts.update(word[i:] for i in tails if i < _GLUED_TAILS_CHECKED or word[i] in "/.~")
    texts.update([text.lstrip("@<") for text in texts if text.startswith(("@", "<"))])
    texts.update([_file_url_path(text) for text in texts if text[:5].lower() == "file:"])
    return texts - {""}


def _file_url_path(url: str) -> str:
    """The local path a `file:` URL names, percent-escapes decoded (`file:///a/b%20c` -> `/a/b c`)."""
    return unquote(urlsplit(url).path)


def _into_process(path: str) -> bool:
    """Whether an absolute path goes into a process's folders, files or environment under /proc
    (`/proc/self/cwd/..`, `/proc/*/environ`), or may, through a glob.

    `..` is folded only up to `/proc/<pid>`: below it, `cwd` and `root` are symlinks, so
    `/proc/self/cwd/../..` is wherever that process's folder's grandparent is.
    """
    parts = Path(path).parts
    folded: list[str] = []
    for index, part in enumerate(parts):
        if folded == ["/", "proc"]:
            below_pid = parts[index + 1 :]
            return any(entry in _PROC_ENTRIES or _GLOB_CHARS.intersection(entry) for entry in below_pid)
        if part == "..":
            if len(folded) > 1:  # (`/..` is `/`)
                folded.pop()
        else:
            folded.append(part)
    return False


def _forbidden(path: Path, workdir: Path, data: Path | None) -> bool:
    """Whether a resolved `path` is off limits (`workdir` and `data`, the data directory, resolved)."""
    if _into_process(str(path)):
        return True
    if path == workdir or path.is_relative_to(workdir):
        return protected_reason(path) is not None
    if protected_reason(path) is not None:
        return True
    if data is None:
        return False
    return path.is_relative_to(data) or data.is_relative_to(path)


def shell_tokens(command: str) -> list[str] | None:
    """Words and operators as bash would split them, or None for unbalanced quotes."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError:
        return None


def _expanded(word: str, base: Path) -> list[Path]:
    """The paths `word` may stand for, from `base`: braces and `~` expanded, globs matched, resolved
    (or, for a path into a process's folders under /proc, as it leads there)."""
    paths: list[Path] = []
    try:
        texts = _braces(word)
    except _TooManyWords:
        raise _TooManyMatches(base) from None
    for text in texts:
        text = os.path.expanduser(text)
        full = text if os.path.isabs(text) else os.path.join(base, text)
        # (`base` is resolved: links on the way are looked for below it only)
        below = 1 if os.path.isabs(text) else len(base.parts)
        candidates = [full]
        if _GLOB_CHARS.intersection(text) and _proc_path(full, below) is None:
            candidates = _glob_candidates(full)
        for candidate in candidates:
            into_process = _proc_path(candidate, below)
            if into_process is not None:
                # (not resolved: `/proc/self/cwd` is the tool's folder to the tool, the server's here)
                paths.append(Path(into_process))
                continue
            try:
                paths.append(Path(candidate).resolve())
            except (OSError, RuntimeError, ValueError):
                continue  # a symlink loop or a NUL: bash fails on it too
    return paths


def _glob_candidates(full: str) -> list[str]:
    """What a glob may stand for: its matches, the folder it starts in (`../../run/*` over an
    empty folder still reaches it) and what its first wildcard matches (`*/self/cwd/..` goes
    through a link `p -> /proc` it matches). _TooManyMatches beyond `_GLOB_MATCHES_CHECKED`."""
    literal = full.split("*")[0].split("?")[0].split("[")[0]
    folder = os.path.dirname(literal) or os.sep
    first_end = full.find(os.sep, len(literal))
    candidates = [folder]
    for pattern in dict.fromkeys([full, full if first_end < 0 else full[:first_end]]):
        found = list(itertools.islice(glob.iglob(pattern), _GLOB_MATCHES_CHECKED + 1))
        if len(found) > _GLOB_MATCHES_CHECKED:
            raise _TooManyMatches(Path(folder))
        candidates += found
    return candidates


def _proc_path(path: str, known: int = 1, links_followed: int = 0) -> str | None:
    """Where `path` leads into a process's folders under /proc (`_into_process`), or None: itself
    (`/proc/self/cwd/..`), or with a symlink on its way replaced by the link's text
    (`p/self/cwd/..` where `p -> /proc`), since resolving it here would see the server's. Its
    first `known` parts are known to hold no symlink."""
    if _into_process(path):
        return path
    if links_followed > _LINKS_FOLLOWED:
        return None
    parts = Path(path).parts
    for index in range(max(known, 1) + 1, len(parts) + 1):
        prefix = os.path.join(*parts[:index])
        if os.path.islink(prefix):
            try:
                target = os.readlink(prefix)
            except OSError:
                return None
            rest = os.path.join(os.path.dirname(prefix), target, *parts[index:])
            return _proc_path(rest, 1, links_followed + 1)
    return None


class _TooManyWords(Exception):
    """Braces expanded to more than `_BRACE_WORDS_CHECKED` words."""


def _braces(word: str) -> list[str]:
    """Bash brace expansion of `word`: lists (`tok{e,}ns`), nested ones (`{x,{ws,y}}`) and
    sequences (`w{r..t}`, `{1..9..2}`); _TooManyWords beyond `_BRACE_WORDS_CHECKED` words."""
    for start, end in _brace_pairs(word):
        options = _brace_options(word[start + 1 : end])
        if options is None:
            continue  # `{a}` or `{}` stays as it is; a later pair may still expand
        head, tail = word[:start], word[end + 1 :]
        expanded: list[str] = []
        for option in options:
            expanded += _braces(head + option + tail)
            if len(expanded) > _BRACE_WORDS_CHECKED:
                raise _TooManyWords(word)
        return expanded
    return [word]


def _brace_pairs(word: str) -> list[tuple[int, int]]:
    """Each `{` of `word` with its matching `}` (nesting counted), leftmost first."""
    pairs: list[tuple[int, int]] = []
    opened: list[int] = []
    for index, char in enumerate(word):
        if char == "{":
            opened.append(index)
        elif char == "}" and opened:
            pairs.append((opened.pop(), index))
    return sorted(pairs)


def _brace_options(inside: str) -> list[str] | None:
    """The words a brace pair stands for: its top-level comma-separated options, or its
    sequence's members; None when bash leaves it alone."""
    options, depth, begun = [], 0, 0
    for index, char in enumerate(inside):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if char == "," and depth == 0:
            options.append(inside[begun:index])
            begun = index + 1
    if options:
        return [*options, inside[begun:]]
    sequence = _BRACE_SEQUENCE.fullmatch(inside)
    return None if sequence is None else _sequence(sequence)


def _sequence(match: re.Match[str]) -> list[str] | None:
    """The members of `{1..5}`, `{01..10}`, `{a..e}`, `{10..1..3}`; None for `{1..a}`, which bash
    leaves alone; _TooManyWords for a sequence longer than `_BRACE_WORDS_CHECKED`."""
    first, last, step_text = match.group("first", "last", "step")
    numbers = first.lstrip("-").isdigit()
    if numbers != last.lstrip("-").isdigit():
        return None
    start, stop = (int(first), int(last)) if numbers else (ord(first), ord(last))
    step = abs(int(step_text or 1)) or 1
    if abs(stop - start) // step >= _BRACE_WORDS_CHECKED:
        raise _TooManyWords(match.group(0))
    direction = 1 if stop >= start else -1
    members = range(start, stop + direction, step * direction)
    if not numbers:
        return [chr(member) for member in members]
    # `{01..10}`: bash pads every member to the width of the wider end
    padded = any(len(end.lstrip("-")) > 1 and end.lstrip("-").startswith("0") for end in (first, last))
    width = max(len(first), len(last)) if padded else 0
    return [f"{member:0{width}d}" for member in members]
