"""Generated files stay in step with the code; every command has help and appears in the README."""

from __future__ import annotations

from pathlib import Path

from taskctl import devtools

ROOT = Path(__file__).resolve().parent.parent


def test_completions_are_fresh() -> None:
    for shell, fname in devtools.SHELLS.items():
        path = ROOT / "completions" / fname
        assert path.is_file(), f"missing {path}: run make completions"
        assert path.read_text() == devtools.completion_script(shell), f"{path} is stale: run make completions"


def test_readme_reference_and_exit_codes_are_fresh() -> None:
    text = (ROOT / "README.md").read_text()
    assert devtools.render_readme(text) == text, "README.md is stale: run make docs"


def test_every_command_has_help_and_is_in_the_readme() -> None:
    text = (ROOT / "README.md").read_text()
    for line, help_text in devtools.help_texts():
        assert f"`{line}`" in text
        body = help_text.split("\n\n", 2)
        assert len(body) >= 2 and body[1].strip(), f"{line} has no help text"


def test_completion_answers_tab(run) -> None:  # type: ignore[no-untyped-def]
    r = run(env={"_TASKCTL_COMPLETE": "complete_bash", "COMP_WORDS": "taskctl --out", "COMP_CWORD": "1"})
    assert "--output" in r.stdout


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
