"""The foundation: global options anywhere, config precedence, URL parsing and masking, output formats."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskctl import config, urls
from taskctl.cli import hoist_global_options
from taskctl.errors import UsageError


def test_global_options_hoisted_from_anywhere() -> None:
    assert hoist_global_options(["table", "describe", "-o", "json", "t1"]) == ["-o", "json", "table", "describe", "t1"]
    assert hoist_global_options(["table", "list", "--output=json", "-q"]) == ["--output=json", "-q", "table", "list"]
    assert hoist_global_options(["queue", "peek", "--", "-o"]) == ["queue", "peek", "--", "-o"]


@pytest.mark.parametrize(
    ("url", "region", "endpoint", "table", "read", "write", "ttl"),
    [
        (
            "dynamodb://@us-east-1/celery_results?read=5&write=7&ttl_seconds=3600",
            "us-east-1",
            None,
            "celery_results",
            5,
            7,
            3600,
        ),
        ("dynamodb://@/?read=5&write=5", None, None, "celery", 5, 5, None),
        ("dynamodb://@localhost:8000/mytable", "us-east-1", "http://localhost:8000", "mytable", 1, 1, None),
        ("dynamodb://@192.168.0.40:8000/t", "us-east-1", "http://192.168.0.40:8000", "t", 1, 1, None),
        ("dynamodb://@us-east-1:9999/t", "us-east-1", None, "t", 1, 1, None),
        ("dynamodb://@us-east-1/t?ttl_seconds=-1", "us-east-1", None, "t", 1, 1, -1),
        ("dynamodb://@us-east-1/t?ttl_seconds=0", "us-east-1", None, "t", 1, 1, 0),
    ],
)
def test_dynamodb_url_read_as_celery(
    url: str, region: str | None, endpoint: str | None, table: str, read: int, write: int, ttl: int | None
) -> None:
    d = urls.parse_dynamodb(url)
    assert (d.region, d.endpoint_url, d.table, d.read, d.write, d.ttl_seconds) == (
        region,
        endpoint,
        table,
        read,
        write,
        ttl,
    )


def test_dynamodb_url_credentials_unquoted_and_masked() -> None:
    url = "dynamodb://AKIA%2Fx:se%2Bcr%2Fet@us-west-2/t"
    d = urls.parse_dynamodb(url)
    assert (d.access_key, d.secret_key) == ("AKIA/x", "se+cr/et")
    assert "se%2Bcr" not in urls.mask(url) and "AKIA%2Fx:****@" in urls.mask(url)


@pytest.mark.parametrize("url", ["dynamodb://AKIA@us-east-1/t", "dynamodb://@localhost/t", "dynamodb://@x/t?read=abc"])
def test_bad_dynamodb_urls_are_usage_errors(url: str) -> None:
    with pytest.raises(UsageError):
        urls.parse_dynamodb(url)


def test_mask_hides_passwords_and_secret_query_values() -> None:
    assert urls.mask("amqp://guest:s3cret@h:5672//") == "amqp://guest:****@h:5672//"
    assert urls.mask("redis://:pw@h/0") == "redis://:****@h/0"
    assert urls.mask("amqp://guest@h//") == "amqp://guest@h//"
    assert "abc" not in urls.mask("sqs://h/?aws_secret_access_key=abc")


def test_scheme_as_celery_by_url() -> None:
    assert urls.scheme_of("db+postgresql://x/y") == "db"
    assert urls.scheme_of("DYNAMODB://@x/t") == "dynamodb"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_precedence_flag_env_section_taskctl_celery_file_default(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "home/.config/taskctl/config.toml",
        """
[default]
backend = "dynamodb://@file-default/t"
broker = "amqp://file-default//"
[env.local]
backend = "dynamodb://@localhost:8000/local"
""",
    )
    environ = {"XDG_CONFIG_HOME": str(cfg.parent.parent), "HOME": str(tmp_path / "home")}
    assert config.resolve(environ=environ).backend == "dynamodb://@file-default/t"
    environ["CELERY_RESULT_BACKEND"] = "dynamodb://@celery-var/t"
    assert config.resolve(environ=environ).backend == "dynamodb://@celery-var/t"
    environ["TASKCTL_RESULT_BACKEND"] = "dynamodb://@taskctl-var/t"
    assert config.resolve(environ=environ).backend == "dynamodb://@taskctl-var/t"
    s = config.resolve(environ=environ, env_name="local")
    assert s.backend == "dynamodb://@localhost:8000/local" and s.env == "local"
    assert (
        config.resolve({"backend": "dynamodb://@flag/t"}, environ=environ, env_name="local").backend
        == "dynamodb://@flag/t"
    )


def test_selected_env_never_falls_through_to_celery_variables(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", '[env.local]\nbackend = "file:///tmp/r"\n')
    environ = {"CELERY_BROKER_URL": "amqp://prod-host//", "HOME": str(tmp_path)}
    s = config.resolve(environ=environ, env_name="local", config=str(cfg))
    assert s.broker == config.DEFAULT_BROKER
    assert config.resolve(environ=environ, config=str(cfg)).broker == "amqp://prod-host//"


def test_unknown_env_is_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown environment 'nope'"):
        config.resolve(environ={"HOME": str(tmp_path)}, env_name="nope")


def test_save_environment_round_trips(tmp_path: Path) -> None:
    p = config.save_environment(
        "local", {"backend": "dynamodb://@localhost:1/t", "transport_options": {"a": "b"}}, tmp_path / "c.toml"
    )
    s = config.resolve(environ={"HOME": str(tmp_path)}, env_name="local", config=str(p))
    assert s.backend == "dynamodb://@localhost:1/t" and s.transport_options == {"a": "b"}


USER_CONFIG = """\
# my taskctl settings: keep these comments
[default]  # used without --env
backend = "dynamodb://@us-east-1/celery"   # production

# staging, reached with --env staging
[env.staging]
broker = 'amqp://guest@staging//'
transport_options = { confirm_publish = true }

[env.other]
x = 1
"""


def test_save_and_remove_environment_keep_every_other_byte(tmp_path: Path) -> None:
    """`local up` writes [env.local], `local down --purge` removes it: comments and layout elsewhere survive."""
    p = write(tmp_path / "c.toml", USER_CONFIG)
    values = {"backend": "dynamodb://local:local@127.0.0.1:8000/celery", "transport_options": {"a": "/tmp/q"}}
    config.save_environment("local", values, p)
    text = p.read_text()
    assert text.startswith(USER_CONFIG)
    assert text[len(USER_CONFIG) :].startswith("\n[env.local]\n")
    config.save_environment("local", {**values, "broker": "filesystem://"}, p)  # replaced where it stands
    assert p.read_text().startswith(USER_CONFIG) and p.read_text().count("[env.local]") == 1
    s = config.resolve(environ={"HOME": str(tmp_path)}, env_name="local", config=str(p))
    assert (s.broker, s.transport_options) == ("filesystem://", {"a": "/tmp/q"})
    assert config.resolve(environ={"HOME": str(tmp_path)}, env_name="staging", config=str(p)).transport_options == {
        "confirm_publish": True
    }
    assert config.remove_environment("local", p) is True
    assert p.read_text() == USER_CONFIG
    assert config.remove_environment("local", p) is False


def test_values_with_newlines_quotes_and_unicode_round_trip(tmp_path: Path) -> None:
    tricky = "line one\nline \"two\" \\ 'three' — ünïcødé \t tab"
    p = config.save_environment(
        "local", {"backend": tricky, "transport_options": {"data_folder_in": tricky}}, tmp_path / "c.toml"
    )
    s = config.resolve(environ={"HOME": str(tmp_path)}, env_name="local", config=str(p))
    assert s.backend == tricky and s.transport_options == {"data_folder_in": tricky}


def test_version_and_bad_output_format(run) -> None:  # type: ignore[no-untyped-def]
    r = run("--version")
    assert r.exit_code == 0 and r.stdout.startswith("taskctl ")
    r = run("-o", "yaml", "table", "list")
    assert r.exit_code == 2 and "unknown output format 'yaml'" in r.stderr


def test_unknown_option_is_exit_2(run) -> None:  # type: ignore[no-untyped-def]
    r = run("--no-such-option")
    assert r.exit_code == 2


@pytest.mark.parametrize(
    ("args", "environ", "origin"),
    [(["--env", ""], {}, "--env"), ([], {"TASKCTL_ENV": ""}, "TASKCTL_ENV"), (["--env", " "], {}, "--env")],
)
def test_empty_environment_name_is_exit_2(
    run, monkeypatch: pytest.MonkeyPatch, args: list[str], environ: dict[str, str], origin: str
) -> None:  # type: ignore[no-untyped-def]
    """Never falls through to CELERY_RESULT_BACKEND: an empty name is a mistake, not 'no environment'."""
    monkeypatch.setenv("CELERY_RESULT_BACKEND", "file:///nonexistent-prod")
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    r = run(*args, "result", "list")
    assert (r.exit_code, r.stdout) == (2, "")
    assert r.stderr.startswith(f"error: the environment name must not be empty (from {origin})\n")
    assert "nonexistent-prod" not in r.stderr
