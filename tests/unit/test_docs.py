"""The docs say what the code says, and every link in them leads somewhere.

- Every relative link and `#anchor` in README.md and docs/*.md resolves (GitHub's anchor rules).
- The README stays a front door (at most 300 lines) and links every docs page.
- The configuration, exit-code and metrics tables in docs/ are what `core.reference` makes of the code
  (`scripts/gen-docs` writes them), and `--help` takes every setting's default from `config.Settings`.
- The README's Quick start names only commands and flags that exist.
"""

from __future__ import annotations

import re
import shlex
import unicodedata
from pathlib import Path

import pytest

from nomad_vault_token.core import config, errors, metrics, options, reference
from testbed import quick_start

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]

_FENCE = re.compile(r"^(```|~~~)")
_LINK = re.compile(r"(?<!!)\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_CODE_SPAN = re.compile(r"`+[^`]*`+")


def prose(text: str) -> list[tuple[int, str]]:
    """The lines outside fenced code blocks, numbered from 1."""
    out, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            out.append((number, line))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lowercase, punctuation dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    text = text.strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a page has: its headings' slugs (repeats get -1, -2, ...) and explicit ids."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for _, line in prose(path.read_text()):
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
        found.update(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", line))
    return found


def links(path: Path) -> list[tuple[int, str]]:
    """Every link target outside code: (line, target)."""
    return [
        (number, target)
        for number, line in prose(path.read_text())
        for target in _LINK.findall(_CODE_SPAN.sub("``", line))
    ]


def broken(path: Path) -> list[str]:
    """What is wrong with each relative link of `path`, one line each."""
    problems = []
    for number, target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not ours to check here
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        where = f"{path.relative_to(ROOT)}:{number}: ({target})"
        if not dest.exists():
            problems.append(f"{where} {file_part} does not exist")
        elif not str(dest).startswith(str(ROOT)):
            problems.append(f"{where} leads out of the repository")
        elif anchor and dest.suffix != ".md":
            problems.append(f"{where} an anchor into a file that is not Markdown")
        elif anchor and anchor not in anchors(dest):
            problems.append(f"{where} no heading in {dest.relative_to(ROOT)} makes #{anchor}")
    return problems


# ---- the checker itself


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Cold start", "cold-start"),
        ("`check`", "check"),
        ("Off the server token: readiness, `cutover`, and the migration procedure",
         "off-the-server-token-readiness-cutover-and-the-migration-procedure"),
        ("Seal migration with `unseal --migrate` (Shamir to auto-unseal, and back)",
         "seal-migration-with-unseal---migrate-shamir-to-auto-unseal-and-back"),
        ("Workload identity (Nomad 1.7+): the Vault side", "workload-identity-nomad-17-the-vault-side"),
        ("Quick start in five steps", "quick-start-in-five-steps"),
        ("`run_x` [the link](x.md)", "run_x-the-link"),
    ],
)  # fmt: skip
def test_slug_follows_githubs_rules(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_checker_finds_each_kind_of_broken_link(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other\n\n## Its part\n")
    (tmp_path / "data.txt").write_text("x\n")
    page.write_text(
        "# Page\n\n## Here, too\n\n"
        "[ok](other.md#its-part) [ok](#here-too) [ok](https://example.com/#x) `[not a link](gone.md)`\n"
        "[gone](gone.md) [no anchor](other.md#nowhere) [self](#nowhere-here) [txt](data.txt#L1)\n"
        "```\n[in code](gone-too.md)\n```\n"
    )
    globals()["ROOT"] = tmp_path  # broken() names paths relative to ROOT
    try:
        found = broken(page)
    finally:
        globals()["ROOT"] = Path(__file__).resolve().parents[2]
    assert len(found) == 4, found
    assert "gone.md does not exist" in found[0]
    assert "#nowhere" in found[1] and "#nowhere-here" in found[2]
    assert "not Markdown" in found[3]


# ---- the pages


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    assert broken(page) == []


def test_readme_is_a_front_door() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines: move reference into docs/"
    assert lines[2] == "```sh" and lines[3].startswith("scripts/demo"), "the two development commands stay first"
    assert lines[4].startswith(" ") and lines[5].startswith("scripts/test")
    linked = {(README.parent / t.partition("#")[0]).resolve() for _, t in links(README) if not t.startswith("#")}
    missing = [p.name for p in sorted(DOCS.glob("*.md")) if p.resolve() not in linked]
    assert missing == [], f"README.md does not link {missing}"


def test_readme_command_table_names_every_command() -> None:
    from nomad_vault_token.cli.table import TABLE

    section = README.read_text().split("## Commands", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"^\| \[?`([a-z-]+)", section, re.MULTILINE))
    assert named == set(TABLE)


# ---- one source: the tables in docs/ are made from the code


@pytest.mark.parametrize("name", sorted(reference.TABLES))
def test_generated_table_is_what_the_code_says(name: str) -> None:
    page = DOCS / reference.TABLES[name][0]
    text = page.read_text()
    assert reference.fill(text, name) == text, f"{page.name}: table {name} differs from the code: run scripts/gen-docs"


def test_a_changed_default_changes_the_page_and_the_help(monkeypatch: pytest.MonkeyPatch) -> None:
    """The drift the tests catch: a default changed in Settings alone makes the page stale and the help follow."""
    from nomad_vault_token.cli.app import help_text

    page = (DOCS / "configuration.md").read_text()
    option = next(o for o in options.OPTIONS if o.name == "check_interval")
    assert "[default: 1m]" in help_text(option)
    monkeypatch.setattr(config.Settings, "check_interval", 20 * 60)
    assert reference.fill(page, "configuration") != page
    assert "[default: 20m]" in help_text(option)


def test_a_new_metric_or_exit_code_makes_the_pages_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(metrics.CATALOG, "nomad_vault_token_snapshot_new_thing", "A new thing.")
    page = (DOCS / "metrics.md").read_text()
    assert reference.fill(page, "metrics") != page
    monkeypatch.setattr(errors, "EX_NEW", 71, raising=False)
    with pytest.raises(ValueError, match="differ"):
        reference.exit_code_table()


def test_every_metric_has_one_file_and_labels_are_enforced() -> None:
    assert {metrics.component_of(name) for name in metrics.CATALOG} == set(metrics.COMPONENTS)
    with pytest.raises(ValueError, match="labels"):
        metrics.gauge("nomad_vault_token_unseal_node_sealed", 1)  # without its node label
    with pytest.raises(ValueError, match="labels"):
        metrics.gauge("nomad_vault_token_token_adopted", 1, node="x")


def test_no_setting_help_states_its_default_by_hand() -> None:
    by_hand = [
        o.name
        for o in options.OPTIONS
        if o.setting and ("[default" in o.help or any(f"${var}" in o.help for var in config.VAULT_ENV))
    ]
    assert by_hand == [], "the help of a setting gets its default and variable from config: remove them"


def test_help_shows_every_settings_default_and_variable() -> None:
    from nomad_vault_token.cli.app import help_text

    for o in (o for o in options.OPTIONS if o.setting):
        default = config.default_text(o.config_key)
        text = help_text(o)
        assert (f"[default: {default}]" in text) == (default is not None), o.name
        for var, key in config.VAULT_ENV.items():
            assert (f"(${var})" in text) == (key == o.config_key), (o.name, var)


def test_defaults_of_own_options_that_name_a_constant() -> None:
    """The few non-setting options whose help names a default that lives elsewhere in the code."""
    from nomad_vault_token.setup import systemd_unit

    help_of = {o.name: " ".join(o.help.split()) for o in options.OPTIONS}
    assert f"[default: {config.DEFAULT_CONFIG}, if present]" in help_of["config"]
    assert f"[default: {config.DEFAULT_CONFIG}]" in help_of["config_path"]
    assert f"[default: {shlex.join(systemd_unit.DEFAULT_AGENT)}]" in help_of["agent_line"]


def test_top_level_help_names_every_exit_code() -> None:
    from typer.testing import CliRunner

    from nomad_vault_token.cli.app import app

    out = " ".join(CliRunner().invoke(app, ["--help"], terminal_width=400).output.split())
    for code in errors.EXIT_CODES:
        assert f"{code.code} {code.brief}" in out, code


# ---- the Quick start names what exists


def test_quick_start_names_only_commands_and_flags_that_exist() -> None:
    from nomad_vault_token.cli.table import TABLE

    commands = quick_start.tool_commands()
    assert len(quick_start.steps()) == 5, "five steps"
    assert {c[0] for c in commands} >= {"bootstrap-roles", "install", "status"}
    for words in commands:
        command = words[0]
        assert command in TABLE, words
        known = {flag for flag, _, _ in options.flags_of(command)} | {"--help"}
        head = words[1 : words.index("--")] if "--" in words else words[1:]
        given = {w.split("=")[0] for w in head if w.startswith("-")}
        assert given <= known, (command, given - known)


# ---- defaults the prose names


_PROSE_DEFAULT = re.compile(r"`(--[a-z-]+|[a-z_]+)`[^`|.]{0,80}?\(?default:?\s+`([^`]+)`")


def prose_defaults(path: Path) -> list[tuple[str, str]]:
    """(flag or key, the default the prose gives it) for each "`--flag` ... default `X`" of a page."""
    text = " ".join(line for _, line in prose(path.read_text()))
    return _PROSE_DEFAULT.findall(text)


def code_default(name: str) -> str | None:
    """What the code says `name`'s (a flag or config key) default is; None: not one the code holds as a value."""
    for o in options.OPTIONS:
        if name in o.flags or (not name.startswith("-") and o.setting and o.config_key == name):
            return config.default_text(o.config_key) if o.setting else o.default
    return config.default_text(name) if name in config.FIELDS else None


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_defaults_named_in_prose_are_the_codes(page: Path) -> None:
    wrong = []
    for name, said in prose_defaults(page):
        actual = code_default(name)
        if actual is not None and said != actual and not actual.startswith(f"{said} "):
            wrong.append(f"{name}: the page says {said!r}, the code {actual!r}")
    assert wrong == []


def test_prose_default_check_catches_a_stale_one(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("- `--check-interval` caps the time between checks (default `20m`).\n")
    [(name, said)] = prose_defaults(page)
    assert (name, said, code_default(name)) == ("--check-interval", "20m", "1m")
