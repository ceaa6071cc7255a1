"""Generated files stay in step with the code; the README and the manual in docs/ say what the code does.

Every command has help, a reference entry and a manual page; links and install lines work; the config examples
are what `taskctl local up` writes; completions offer the output formats.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from taskctl import devtools

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def test_completions_are_fresh() -> None:
    for shell, fname in devtools.SHELLS.items():
        path = ROOT / "completions" / fname
        assert path.is_file(), f"missing {path}: run make completions"
        assert path.read_text() == devtools.completion_script(shell), f"{path} is stale: run make completions"


def test_docs_reference_and_readme_exit_codes_are_fresh() -> None:
    for path, text in devtools.docs_files().items():
        assert path.is_file(), f"missing {path}: run make docs"
        assert path.read_text() == text, f"{path} is stale: run make docs"


def test_every_command_has_help_a_reference_entry_and_a_manual_page() -> None:
    reference = (DOCS / "reference.md").read_text()
    index = (DOCS / "README.md").read_text()
    for line, help_text in devtools.help_texts():
        assert f"## `{line}`" in reference, f"{line} missing from docs/reference.md: run make docs"
        body = help_text.split("\n\n", 2)
        assert len(body) >= 2 and body[1].strip(), f"{line} has no help text"
        words = line.split()
        if len(words) >= 2:  # each command group has its page, linked from the index, naming every command
            page = DOCS / f"{words[1]}.md"
            assert page.is_file(), f"no manual page {page} for {line}"
            assert f"]({words[1]}.md)" in index, f"docs/README.md does not link {page.name}"
            assert f"`{line}" in page.read_text(), f"{page} does not describe {line}"


def test_readme_is_a_five_minute_read_that_opens_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    head = "\n".join(text.splitlines()[:8])
    assert "make demo" in head and "make test" in head
    assert "](docs/README.md)" in text and "](docs/reference.md)" in text


def test_readme_describes_every_output_format() -> None:
    from taskctl.formats.output import FORMATS

    text = (ROOT / "README.md").read_text()
    section = text.split("## Output formats", 1)[1].split("\n## ", 1)[0].split("<!-- formats:end -->", 1)[1]
    missing = [f for f in FORMATS if f != "table" and f"`{f}`" not in section]
    assert not missing, f"README's Output formats section does not describe {missing}"


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted(DOCS.glob("*.md"))]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)
    return {_slug(m) for m in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)}


def test_every_link_and_cited_document_is_in_the_repository() -> None:
    for md in _markdown_files():
        text = md.read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            file, _, anchor = target.partition("#")
            dest = (md.parent / file).resolve() if file else md
            assert dest.exists(), f"{md.name} links {target}, which is not in the repository"
            if anchor and dest.suffix == ".md":
                assert anchor in _anchors(dest), f"{md.name} links {target}: no such heading"
        # documents cited by name (not linked) must exist too: no design notes from outside the repository
        for name in set(re.findall(r"\b([\w-]+\.md)\b", text)):
            assert any(ROOT.glob(f"**/{name}")), f"{md.name} cites {name}, which is not in the repository"
        assert "celery-formats" not in text and "notes/" not in text, f"{md.name} cites a document outside the repo"


def test_install_lines_work_from_a_checkout() -> None:
    """No index has a package named taskctl: every documented install names a path (., '.[all]', dist/...)."""
    for md in [*_markdown_files(), *sorted((ROOT / "examples").glob("*.sh"))]:
        for spec in re.findall(r"\bpipx? install\s+(?:-\S+\s+)*(\S+)", md.read_text()):
            assert spec.strip("'\"`").startswith((".", "dist/")), f"{md.name}: pip install {spec} names no path"


def _toml_blocks(path: Path) -> list[dict[str, Any]]:
    return [tomllib.loads(b) for b in re.findall(r"```toml\n(.*?)```", path.read_text(), flags=re.DOTALL)]


def test_config_examples_are_what_local_up_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    from taskctl import local

    monkeypatch.setenv("HOME", "/home/me")
    monkeypatch.delenv("XDG_STATE_HOME")
    written = local.env_values(8000, local.paths())
    for doc in (ROOT / "README.md", DOCS / "local.md"):
        examples = [b["env"]["local"] for b in _toml_blocks(doc) if "local" in b.get("env", {})]
        assert examples, f"{doc.name} has no [env.local] example"
        assert all(e == written for e in examples), f"{doc.name}'s [env.local] is not what `local up` writes"


def test_documented_local_endpoints_carry_dummy_credentials() -> None:
    """DynamoDB Local and moto refuse unsigned calls, and a fresh machine has no AWS credentials."""
    for md in _markdown_files():
        text = md.read_text()
        bare = re.findall(r"dynamodb://@(?:localhost|127\.0\.0\.1)[^\s`'\"]*", text)
        assert not bare, f"{md.name}: {bare} fails without AWS credentials; use dynamodb://local:local@..."
        for block in re.findall(r"```(?:sh|console)\n(.*?)```", text, flags=re.DOTALL):
            if re.search(r"--endpoint-url\s+http://(?:localhost|127\.0\.0\.1)", block):
                assert "AWS_ACCESS_KEY_ID=" in block, f"{md.name}: a local --endpoint-url without dummy credentials"


def test_completion_answers_tab(run) -> None:  # type: ignore[no-untyped-def]
    r = run(env={"_TASKCTL_COMPLETE": "complete_bash", "COMP_WORDS": "taskctl --out", "COMP_CWORD": "1"})
    assert "--output" in r.stdout


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["taskctl", "-o", ""], ["table", "plain", "json", "jsonl", "csv", "tsv", "markdown"]),
        (["taskctl", "result", "list", "-o", "js"], ["json", "jsonl"]),
        (["taskctl", "queue", "stats", "--output", "=", "c"], ["csv"]),
        (["taskctl", "--output", "="], ["table", "plain", "json", "jsonl", "csv", "tsv", "markdown"]),
    ],
)
def test_bash_completion_offers_output_formats_anywhere(words: list[str], expected: list[str]) -> None:
    """The checked-in bash script, sourced in a real bash, completes `-o <TAB>` without starting taskctl."""
    if shutil.which("bash") is None:
        pytest.skip("bash not installed")
    script = (
        f"source {ROOT / 'completions' / 'taskctl.bash'}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
        "_taskctl_completion /nonexistent/taskctl; printf '%s\\n' \"${COMPREPLY[@]}\"\n"
    )
    res = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    assert res.stdout.split() == expected, res.stderr


def test_zsh_and_fish_completion_offer_output_formats() -> None:
    from taskctl.formats.output import FORMATS

    zsh = (ROOT / "completions" / "_taskctl").read_text()
    fish = (ROOT / "completions" / "taskctl.fish").read_text()
    assert f"-o|--output) compadd -- {' '.join(FORMATS)};" in zsh
    assert f'--short-option o --long-option output --exclusive --arguments "{" ".join(FORMATS)}"' in fish


def test_root_help_lines_match_each_group_and_formats_agree() -> None:
    from taskctl import cli, output

    assert cli.FORMATS == output.FORMATS
    for name, line in cli.COMMAND_GROUPS.items():
        assert cli.load_group(name).get_short_help_str(limit=300) == line, name


def test_help_does_not_load_command_modules_or_the_renderer() -> None:
    import subprocess
    import sys

    code = (
        "import sys\nfrom taskctl.cli import main\nsys.argv=['taskctl','--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('LOADED', sorted(m for m in sys.modules if m.startswith(('taskctl.commands.', 'taskctl.output',"
        " 'taskctl.models')) and m != 'taskctl.commands.common'), file=sys.stderr)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "LOADED []" in res.stderr, res.stderr[-400:]
