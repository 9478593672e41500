"""Every command the README shows is run, or at least parsed, by a test.

The rules, as implemented here:

1. Extraction. Every fenced block (``` or ~~~, indented too, as in a list item) whose info string is
   `bash` (its first word) is read; other fences (`text`, a plain fence for layouts and output, …) are
   ignored, but a fence marked `sh`, `shell`, `console` or `zsh` fails the fast test: commands go in
   `bash` blocks, output in `text` ones.
   A line ending in `\\` is joined with the next, as bash does; so is a line that leaves a quote open
   (a multi-line SQL string). Blank lines and comment-only lines are dropped. A command may end with a
   comment, `cmd …   # comment`: a `#` starts a comment only outside quotes and at the start of a word,
   so `"SELECT '#1'"` or `a#b` is part of the command.
2. Classification. A line is cut into commands at `&&`, `||`, `;`, `|` and `&` (redirections and
   leading `NAME=value` assignments are set aside), and each must be one of:
   - `lmforge …` — parsed by the real Typer/click app without running it (an unknown command or
     option, a missing argument, an extra argument or a value of the wrong type fails), then run for
     real by the slow test, in README order, each line in its own `bash -c` in one temporary
     directory (so `data/…` and the default lake `./lake` land there; `LMFORGE_LAKE` is unset, as for
     a new user), `lmforge` being this checkout run by the test's Python (`sys.executable -c "from
     flows.cli import main; main()"`), flow runs recorded on the session's Prefect test server. The
     exit code must be 0. A command that generates with a model (one that has a `--server` option:
     `lmforge synth …`) is run with `--server endpoint --url URL` appended, URL being the suite's
     shared vLLM server (`generation_server` in conftest.py): the README shows the default embedded
     server, the test points the same command at the shared one so the suite starts one server, not
     one per command; such a command must therefore end its line.
   - `make TARGET …` — the target must exist in the Makefile; not run here (`make run` and
     `make test` are the whole product and the whole suite, run by CI).
   - `python bench/NAME.py …` — the script must exist, `python bench/NAME.py --help` must exit 0
     and list every `--option` the README passes it; not run (benchmarks take minutes, their
     numbers are measured by hand).
   - one of the shell commands in `SHELL` (`cp`, `mkdir`, `ls`, …) — run for real in the temporary
     directory, in order with the `lmforge` commands.
   Anything else (`ray start`, `torchrun …`, `prefect …`, `curl`, `export`, `cd`, …), and anything
   that cannot run on one offline machine without a GPU, must carry a marker comment
   `# needs: <reason>` (each reason starts with one of `NEEDS`, words in parentheses aside; several
   are joined by `and` or `,`; e.g. `# needs: a Ray cluster (ray start --head)`): such a line is not
   run, but every `lmforge` command on it is still parsed (`torchrun … .venv/bin/lmforge train …`
   included), every `make` target checked and every benchmark's `--help` run. A command of no
   known kind, or an unknown reason, fails the fast test, so a new README command cannot go
   untested silently.
3. Tests. `test_every_readme_command_parses` does every check that runs nothing (under a second, so a
   typo fails fast), `test_every_readme_benchmark_answers_help` the benchmarks' `--help` (~20 s: some
   import torch), `test_readme_commands_run_on_a_fresh_lake` (slow) runs the runnable lines for real,
   stopping at the first that fails (what follows depends on it; with `-s` it prints each line's
   time). Set `LMFORGE_TEST_README` to check another file (a draft) instead of README.md.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = Path(os.environ.get("LMFORGE_TEST_README") or ROOT / "README.md")
if not README.is_absolute():
    README = ROOT / README

# What a `# needs: <reason>` marker may give as the reason a command is shown but not run: what the test's machine
# lacks, or what the tour before it does not make. A reason may go on after one of these ("several GPUs or
# processes", "a GPU (CUDA vLLM)"); several are joined by `and` or `,`.
NEEDS = (
    "a GPU",
    "several GPUs",
    "a Ray cluster",
    "a Slurm cluster",
    "S3 credentials",
    "a Hugging Face token",
    "network access",
    "root",
    "make serve running",
    "a server someone else runs",
    "FLORES-200",
    "the converted default model",
    "judged preference pairs",
    "a reward model",
)
# Shell commands the slow test runs for real in its temporary directory, between the `lmforge` ones.
SHELL = frozenset({"cp", "mkdir", "ls", "cat", "head", "tail", "wc", "du", "zcat"})
COMMAND_FENCES = {"bash"}
SHELL_LIKE_FENCES = {"sh", "shell", "console", "zsh", "shell-session"}

FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([^\s`]*)")  # indented too: a fence inside a list item
WORD_BREAKS = " \t\n;&|()"
OPERATORS = {"&&", "||", ";", "|", "&", "|&", ";;"}
REDIRECTIONS = {">", ">>", "<", "<<", "<<<", ">&", "&>", "&>>", ">|", "<>"}
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
MARKER = re.compile(r"(?:^|[\s#])needs:\s*(.*)$")
BENCH = re.compile(r"^bench/[\w-]+\.py$")


@dataclass(frozen=True)
class Command:
    """One logical command line of a `bash` block."""

    line: int  # where it starts in the file
    text: str  # what bash runs: continuations joined, the trailing comment cut off
    comment: str = ""  # the trailing comment, without its `#`
    unfinished: bool = False  # the block ended inside a quote or after a `\`

    @property
    def shown(self) -> str:
        return " ".join(self.text.split())

    @property
    def needs(self) -> list[str] | None:
        """The reasons of a `# needs: …` marker (what is in parentheses left out), or None without one."""
        found = MARKER.search(self.comment)
        if found is None:
            return None
        reasons = re.sub(r"\s*\([^)]*\)", "", found[1]).strip()
        return [r.strip().rstrip(".") for r in re.split(r"\s*,\s*|\s+and\s+", reasons) if r.strip()]


def known_reason(reason: str) -> bool:
    return any(reason == r or reason.startswith(r + " ") for r in NEEDS)


def split_comment(line: str) -> tuple[str, str, str | None]:
    """(code, comment, the quote left open or None): a quote-aware scan, as bash reads a line."""
    quote = None
    i = 0
    while i < len(line):
        c = line[i]
        if quote == "'":
            if c == "'":
                quote = None
        elif quote == '"':
            if c == "\\":
                i += 1
            elif c == '"':
                quote = None
        elif c == "\\":
            i += 1
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1] in WORD_BREAKS):
            return line[:i].rstrip(), line[i + 1 :].strip(), None
        i += 1
    return line.rstrip(), "", quote


def fence_languages(markdown: str) -> list[tuple[int, str]]:
    """(line, info string's first word) of every opening fence."""
    found, fence = [], None
    for number, line in enumerate(markdown.splitlines(), 1):
        if fence is None:
            opening = FENCE.match(line)
            if opening:
                fence = opening[1]
                found.append((number, opening[2].lower()))
        elif closes(line, fence):
            fence = None
    return found


def closes(line: str, fence: str) -> bool:
    stripped = line.strip()
    return len(stripped) >= len(fence) and set(stripped) == {fence[0]}


def extract_commands(markdown: str) -> list[Command]:
    """The command lines of every `bash` block, in order (rule 1)."""
    commands: list[Command] = []
    fence, in_bash = None, False
    pending, joiner, start = "", "", 0
    for number, line in enumerate(markdown.splitlines(), 1):
        if fence is None:
            opening = FENCE.match(line)
            if opening:
                fence, in_bash = opening[1], opening[2].lower() in COMMAND_FENCES
            continue
        if closes(line, fence):
            if pending:
                commands.append(Command(start, split_comment(pending)[0], unfinished=True))
            fence, pending = None, ""
            continue
        if not in_bash:
            continue
        if not pending:
            if not line.strip() or line.strip().startswith("#"):
                continue
            start, pending = number, line.strip()
        else:
            pending += joiner + line
        code, comment, quote = split_comment(pending)
        if quote:
            joiner = "\n"  # a quoted string goes on, newline included
        elif not comment and code.endswith("\\"):
            pending, joiner = code[:-1], ""  # bash drops the backslash and the newline
        else:
            commands.append(Command(start, code, comment))
            pending = ""
    return commands


def words(text: str) -> list[str]:
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    return list(lexer)


def segments(text: str) -> list[list[str]]:
    """The simple commands of a line: cut at operators, redirections and leading assignments set aside."""
    cut: list[list[str]] = [[]]
    tokens = words(text)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in OPERATORS:
            cut.append([])
        elif token in REDIRECTIONS:
            if cut[-1] and cut[-1][-1].isdigit():  # the `2` of `2>`
                cut[-1].pop()
            i += 1  # and its target
        elif ASSIGNMENT.match(token) and not cut[-1]:
            pass
        else:
            cut[-1].append(token)
        i += 1
    return [s for s in cut if s]


@dataclass
class Plan:
    """What the tests do with one command line (rule 2)."""

    command: Command
    runs: bool = False  # run for real by the slow test
    lmforge: list[list[str]] = field(default_factory=list)  # the arguments of each `lmforge` on the line
    make_targets: list[str] = field(default_factory=list)
    bench: list[list[str]] = field(default_factory=list)  # `bench/NAME.py ARGS…`
    ends_with_lmforge: bool = False  # its last command is an `lmforge` one
    generates: bool = False  # … and generates with a model (set by `check`)
    problems: list[str] = field(default_factory=list)


def is_python(word: str) -> bool:
    return Path(word).name in ("python", "python3")


def plan(command: Command) -> Plan:
    p = Plan(command)
    if command.unfinished:
        p.problems.append("the block ends inside a quote or after a `\\`")
        return p
    try:
        parts = segments(command.text)
    except ValueError as e:
        p.problems.append(f"cannot split into words: {e}")
        return p
    needs = command.needs
    if needs is not None:
        unknown = [r for r in needs if not known_reason(r)]
        if not needs or unknown:
            p.problems.append(f"`# needs:` reason {unknown or needs!r} starts with none of {list(NEEDS)}")
    kinds = []
    for words_ in parts:
        first = words_[0]
        if Path(first).name == "lmforge" or (needs is not None and any(Path(w).name == "lmforge" for w in words_)):
            at = next(i for i, w in enumerate(words_) if Path(w).name == "lmforge")
            p.lmforge.append(words_[at + 1 :])
            kind = "lmforge"
            if needs is None and first != "lmforge":
                p.problems.append(f"call it as `lmforge`, not `{' '.join(words_[: at + 1])}`, or mark it `# needs: …`")
        elif first == "make":
            p.make_targets += [w for w in words_[1:] if not w.startswith("-") and "=" not in w]
            kind = "make"
        elif is_python(first) and len(words_) > 1 and BENCH.match(words_[1]):
            p.bench.append(words_[1:])
            kind = "bench"
        elif first in SHELL:
            kind = "shell"
        elif needs is not None:
            kind = "needs"
        else:
            p.problems.append(
                f"`{first}` is no kind of command this test knows: use `lmforge …`, `make TARGET`, "
                f"`python bench/NAME.py`, one of {sorted(SHELL)}, or mark the line `# needs: <reason>` "
                f"(one of {list(NEEDS)})"
            )
            kind = "unknown"
        kinds.append(kind)
    if needs is None and {"lmforge", "shell"} & set(kinds) and {"make", "bench"} & set(kinds):
        p.problems.append("one line mixes commands the test runs with `make`/benchmarks it does not: split it")
    p.runs = needs is None and not p.problems and bool({"lmforge", "shell"} & set(kinds))
    p.ends_with_lmforge = bool(kinds) and kinds[-1] == "lmforge"
    return p


def readme_plans(path: Path = README) -> list[Plan]:
    return [plan(c) for c in extract_commands(path.read_text(encoding="utf-8"))]


def click_errors() -> tuple[type[Exception], type[Exception]]:
    """(ClickException, Exit) as the CLI raises them: typer ≥ 0.29 parses with its own copy of click (`typer._click`),
    older ones with click itself."""
    try:
        from typer._click.exceptions import ClickException
        from typer.exceptions import Exit
    except ImportError:
        from click.exceptions import ClickException, Exit
    return ClickException, Exit


@functools.cache
def lmforge_command():
    import typer

    from flows.cli import app

    return typer.main.get_command(app)


def parse_lmforge(args: list[str]):
    """Parse `lmforge ARGS` with the real command tree, running nothing (`make_context` does not invoke); the parser's
    errors propagate. A group's context keeps its subcommand and that one's arguments for the next step down."""
    command = lmforge_command()
    ctx = command.make_context("lmforge", list(args))
    while hasattr(command, "resolve_command"):  # a group
        protected = ctx._protected_args if hasattr(ctx, "_protected_args") else ctx.protected_args
        rest = [*protected, *ctx.args]
        if not rest:
            ctx.fail("Missing command.")
        name, command, rest = command.resolve_command(ctx, rest)
        ctx = command.make_context(name, rest, parent=ctx)
    return ctx


def lmforge_problem(args: list[str]) -> tuple[str | None, bool]:
    """(why `lmforge ARGS` does not parse, or None; whether it generates with a model: it has a `--server` option)."""
    click_exception, exit_ = click_errors()
    try:
        ctx = parse_lmforge(args)
    except exit_ as e:  # `--help`
        return (None if e.exit_code == 0 else f"exits {e.exit_code}"), False
    except click_exception as e:
        where = f" ({e.ctx.command_path})" if getattr(e, "ctx", None) is not None else ""
        return f"{e.format_message()}{where}", False
    return None, any(p.name == "server" for p in ctx.command.params)


@functools.cache
def makefile_targets() -> set[str]:
    targets = set()
    for line in (ROOT / "Makefile").read_text().splitlines():
        rule = re.match(r"^([^\s:#=][^:=]*?)\s*::?(?!=)", line)
        if rule:
            targets.update(rule[1].split())
    return targets


def bench_problems(scripts: list[list[str]]) -> dict[tuple[str, ...], str]:
    """Each benchmark's `--help`, all at once: a missing script, a non-zero exit or an option it does not list."""
    found: dict[tuple[str, ...], str] = {}
    running = {}
    for call in {tuple(c) for c in scripts}:
        if not (ROOT / call[0]).is_file():
            found[call] = f"{call[0]} does not exist"
            continue
        running[call] = subprocess.Popen(
            [sys.executable, call[0], "--help"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    for call, process in running.items():
        output = process.communicate(timeout=300)[0]
        if process.returncode != 0:
            found[call] = f"`python {call[0]} --help` exits {process.returncode}: {output[-1500:]}"
            continue
        listed = set(re.findall(r"(?<![\w-])--?[\w][\w-]*", output))
        missing = [o for o in (a.split("=")[0] for a in call[1:] if a.startswith("-")) if o not in listed]
        if missing:
            found[call] = f"{call[0]} has no option {', '.join(missing)} (its --help lists {sorted(listed)})"
    return found


def check(p: Plan) -> list[str]:
    """The checks that run nothing, on one line (the benchmarks' `--help` aside: `benchmark_problems`). Sets
    `p.generates`: its last command generates, so the slow test appends `--server endpoint --url …` to it."""
    why = list(p.problems)
    generating = []
    for args in p.lmforge:
        problem, generates = lmforge_problem(args)
        generating.append(generates)
        if problem:
            why.append(f"`lmforge {shlex.join(args)}`: {problem}")
    if p.command.needs is None and any(generating):
        p.generates = p.ends_with_lmforge and generating[-1] and sum(generating) == 1
        if not p.generates:
            why.append("a generating command must be the only one on its line, and end it (`--server …` is appended)")
    why += [f"make has no target `{t}`" for t in p.make_targets if t not in makefile_targets()]
    return why


def problems_of(plans: list[Plan]) -> list[str]:
    return [where(p, w) for p in plans for w in check(p)]


def benchmark_problems(plans: list[Plan]) -> list[str]:
    benches = bench_problems([b for p in plans for b in p.bench])
    return [where(p, benches[tuple(b)]) for p in plans for b in p.bench if tuple(b) in benches]


def where(p: Plan, problem: str) -> str:
    return f"{README.name}:{p.command.line}: {p.command.shown}\n    {problem}"


def test_every_readme_command_parses():
    """Rules 1 and 2 on the README, running nothing: seconds, so a typo fails fast."""
    text = README.read_text(encoding="utf-8")
    wrong_fences = [f"{README.name}:{n}: a ```{lang} fence" for n, lang in fence_languages(text) if lang in SHELL_LIKE_FENCES]
    assert not wrong_fences, "commands go in ```bash blocks (read by this test), output in ```text:\n" + "\n".join(wrong_fences)
    plans = readme_plans()
    assert plans, f"{README} shows no command in a ```bash block"
    problems = problems_of(plans)
    assert not problems, f"{len(problems)} README command problem(s):\n" + "\n".join(problems)


def test_every_readme_benchmark_answers_help():
    """Rule 2 for `python bench/NAME.py …`: the script is there and takes the options shown (~20 s: some import torch)."""
    problems = benchmark_problems(readme_plans())
    assert not problems, "\n".join(problems)


def lmforge_shim(folder: Path) -> Path:
    """A `bin/` whose `lmforge` is this checkout run by the test's Python, as tests/test_console.py runs it."""
    folder.mkdir(parents=True, exist_ok=True)
    shim = folder / "lmforge"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -c "from flows.cli import main; main()" "$@"\n')
    shim.chmod(0o755)
    return folder


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_readme_commands_run_on_a_fresh_lake(tmp_path, prefect_harness, request):
    """The README's `lmforge` (and allowed shell) lines for real, in order, in one fresh folder (rule 2)."""
    from prefect.settings import PREFECT_API_URL

    runnable = [p for p in readme_plans() if p.runs]
    assert runnable, f"{README} shows no command this test can run"
    broken = [where(p, w) for p in runnable for w in check(p)]  # `check` also finds the lines that generate
    assert not broken, "fix these before running them:\n" + "\n".join(broken)
    url = request.getfixturevalue("generation_server").url if any(p.generates for p in runnable) else None

    work = tmp_path / "guide"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "LMFORGE_LAKE"}  # the default lake, ./lake, as for a new user
    env |= {
        "PATH": f"{lmforge_shim(tmp_path / 'bin')}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "COLUMNS": "120",
        "HF_HUB_OFFLINE": "1",
    }
    for p in runnable:
        line = p.command.text + (f" --server endpoint --url {shlex.quote(url)}" if p.generates else "")
        shown = " ".join(line.split())
        started = time.monotonic()
        result = subprocess.run(
            ["bash", "-c", "set -o pipefail\n" + line],
            cwd=work,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=1800,
        )
        at = f"{README.name}:{p.command.line}"
        print(f"{time.monotonic() - started:6.1f} s  {at}: {shown}", flush=True)  # seen with -s
        assert result.returncode == 0, f"{at}: `{shown}` exited {result.returncode}:\n{result.stdout[-3000:]}"


MADE_UP = """\
# Guide

```bash
lmforge stats   # documents per language
lmforge query "SELECT '#1' AS n, count(*) FROM documents" \\
    --format csv      # a # in quotes is no comment
  # a comment-only line

lmforge ingest s3://b/crawl --executor ray   # runs elsewhere  # needs: a Ray cluster (ray://…, a, b) and S3 credentials
lmforge query "SELECT lang
               FROM documents" > langs.txt
torchrun --nproc_per_node 2 .venv/bin/lmforge train pretrain tiny --tokenizer t   # needs: several GPUs or processes
make test SLOW=1
python bench/dedup.py --repeats 3
cp a#b c && ls lake
ray start --head
export LMFORGE_LAKE=/x   # needs: my laptop
```

```text
lmforge not-run --at-all
```

```
lmforge neither
```

1. In a list:

    ~~~bash
    lmforge dedup
    ~~~
"""


def test_the_extractor_on_a_made_up_readme():
    commands = extract_commands(MADE_UP)
    assert [c.line for c in commands] == [4, 5, 9, 10, 12, 13, 14, 15, 16, 17, 31]
    stats, query, ray, multiline, torchrun, make, bench, cp, bare_ray, export, dedup = commands
    assert (stats.text, stats.comment, stats.needs) == ("lmforge stats", "documents per language", None)
    assert query.text == "lmforge query \"SELECT '#1' AS n, count(*) FROM documents\"     --format csv"
    assert query.comment == "a # in quotes is no comment"
    assert words(query.text) == ["lmforge", "query", "SELECT '#1' AS n, count(*) FROM documents", "--format", "csv"]
    assert ray.needs == ["a Ray cluster", "S3 credentials"] and ray.text.endswith("--executor ray")
    assert multiline.text == 'lmforge query "SELECT lang\n               FROM documents" > langs.txt'
    assert cp.text == "cp a#b c && ls lake" and not cp.comment
    assert dedup.text == "lmforge dedup"  # an indented ~~~ bash fence counts; ```text and plain fences do not

    plans = [plan(c) for c in commands]
    assert all(p.runs and not p.problems for p in (plans[0], plans[1], plans[3], plans[7], plans[10]))
    assert plans[3].lmforge == [["query", "SELECT lang\n               FROM documents"]]  # the redirection set aside
    assert not plans[2].runs and not plans[2].problems and plans[2].lmforge[0][:2] == ["ingest", "s3://b/crawl"]
    assert not plans[4].runs and plans[4].lmforge == [["train", "pretrain", "tiny", "--tokenizer", "t"]]
    assert not plans[5].runs and plans[5].make_targets == ["test"]
    assert not plans[6].runs and plans[6].bench == [["bench/dedup.py", "--repeats", "3"]]
    assert "no kind of command" in plans[8].problems[0]
    assert "my laptop" in plans[9].problems[0]
    assert fence_languages(MADE_UP) == [(3, "bash"), (20, "text"), (24, ""), (30, "bash")]


def test_parsing_catches_what_a_user_would_get_wrong():
    assert lmforge_problem(["query", "SELECT 1", "--format", "csv"]) == (None, False)
    assert lmforge_problem(["synth", "wrap", "--style", "easy"]) == (None, True)
    assert lmforge_problem(["ingest", "--help"]) == (None, False)
    assert "No such option" in lmforge_problem(["stats", "--bogus"])[0]
    assert "Missing argument" in lmforge_problem(["query"])[0]
    assert "No such command" in lmforge_problem(["tokenizer", "trian"])[0]
    assert "valid integer" in lmforge_problem(["synth", "wrap", "--max-documents", "many"])[0]
    assert "unexpected extra argument" in lmforge_problem(["train", "pretrain", "NAME", "--tokenizer", "t", "…"])[0]


def test_only_a_line_that_ends_with_its_one_generating_command_gets_the_shared_server():
    alone, piped = plan(Command(1, "lmforge synth wrap --max-documents 1")), plan(Command(2, "lmforge synth wrap | head -3"))
    assert check(alone) == [] and alone.generates and alone.runs
    assert "must be the only one on its line, and end it" in check(piped)[0] and not piped.generates
    elsewhere = "lmforge synth wrap --server endpoint --url http://gpu:8000 | head"
    marked = plan(Command(3, elsewhere, "needs: a server someone else runs"))
    assert check(marked) == [] and not marked.runs
