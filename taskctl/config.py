"""The one settings resolver, used by every command.

Precedence, highest first: command-line flag; the environment selected with ``--env``/``TASKCTL_ENV`` in the
config file (so ``--env local`` can never reach production through an exported ``CELERY_*``); ``TASKCTL_*``
variables; ``CELERY_*`` variables; the config file's ``[default]`` section; built-in defaults.

The config file is ``--config PATH``, else ``$TASKCTL_CONFIG``, else ``./taskctl.toml``, else
``$XDG_CONFIG_HOME/taskctl/config.toml`` (``~/.config/taskctl/config.toml``)::

    [default]
    backend = "dynamodb://@us-east-1/celery"
    broker = "amqp://guest@localhost//"

    [env.local]
    backend = "dynamodb://@localhost:8000/celery"
    broker = "filesystem://"
    [env.local.transport_options]
    data_folder_in = "/tmp/q"
    data_folder_out = "/tmp/q"
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskctl.errors import UsageError

DEFAULT_BROKER = "amqp://guest@localhost//"

#: setting -> (flag, TASKCTL_* variable, CELERY_* variable or None)
SETTINGS: dict[str, tuple[str, str, str | None]] = {
    "backend": ("--backend", "TASKCTL_RESULT_BACKEND", "CELERY_RESULT_BACKEND"),
    "broker": ("--broker", "TASKCTL_BROKER_URL", "CELERY_BROKER_URL"),
    "endpoint_url": ("--endpoint-url", "TASKCTL_ENDPOINT_URL", None),
    "region": ("--region", "TASKCTL_REGION", None),
    "aws_profile": ("--aws-profile", "TASKCTL_AWS_PROFILE", None),
    "management_url": ("--management-url", "TASKCTL_MANAGEMENT_URL", None),
    "serializer": ("--serializer", "TASKCTL_SERIALIZER", "CELERY_RESULT_SERIALIZER"),
    "key_prefix": ("--key-prefix", "TASKCTL_KEY_PREFIX", None),
}
BUILTIN_DEFAULTS: dict[str, Any] = {"broker": DEFAULT_BROKER}


@dataclass(frozen=True)
class Settings:
    backend: str | None = None
    broker: str = DEFAULT_BROKER
    endpoint_url: str | None = None
    region: str | None = None
    aws_profile: str | None = None
    management_url: str | None = None
    serializer: str | None = None
    key_prefix: str | None = None
    env: str | None = None
    config_file: Path | None = None
    #: kombu transport options for the broker (e.g. filesystem:// folders, TLS)
    transport_options: dict[str, Any] = field(default_factory=dict)
    #: transport options for the result backend (e.g. global_keyprefix)
    result_transport_options: dict[str, Any] = field(default_factory=dict)
    #: setting -> where its value came from ("flag", "env TASKCTL_RESULT_BACKEND", "file [env.local]", ...)
    sources: dict[str, str] = field(default_factory=dict)
    #: --unsafe-pickle and friends set by commands are not settings; everything else from the file
    extra: dict[str, Any] = field(default_factory=dict)

    def require_backend(self) -> str:
        if not self.backend:
            raise UsageError(
                "no result backend configured",
                hint="pass --backend URL, or set TASKCTL_RESULT_BACKEND or CELERY_RESULT_BACKEND",
            )
        return self.backend


def config_path(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> Path | None:
    """The config file in use, or None when there is none."""
    env = os.environ if environ is None else environ
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise UsageError(f"config file not found: {p}")
        return p
    if env.get("TASKCTL_CONFIG"):
        p = Path(env["TASKCTL_CONFIG"]).expanduser()
        if not p.is_file():
            raise UsageError(f"config file not found: {p} (from TASKCTL_CONFIG)")
        return p
    local = Path("taskctl.toml")
    if local.is_file():
        return local
    user = user_config_path(env)
    return user if user.is_file() else None


def user_config_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", str(Path.home()))) / ".config")
    return Path(base) / "taskctl" / "config.toml"


def state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """XDG state directory for taskctl (the local stack keeps its files here)."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME", str(Path.home()))) / ".local" / "state")
    return Path(base) / "taskctl"


def load_file(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    import tomllib  # only when a config file exists

    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc.strerror}") from None


def resolve(
    flags: dict[str, Any] | None = None,
    *,
    env_name: str | None = None,
    config: str | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Resolve every setting once, recording where each came from."""
    flags = flags or {}
    environ = dict(os.environ if environ is None else environ)
    path = config_path(config, environ)
    data = load_file(path)
    default_section: dict[str, Any] = dict(data.get("default", {}))
    envs: dict[str, Any] = dict(data.get("env", {}))
    selected_name = env_name if env_name is not None else environ.get("TASKCTL_ENV")
    if selected_name is not None and not selected_name.strip():
        # an unset shell variable must not select "no environment" and so reach CELERY_* (production)
        origin = "--env" if env_name is not None else "TASKCTL_ENV"
        raise UsageError(
            f"the environment name must not be empty (from {origin})",
            hint="name an environment defined as [env.NAME] in the config file"
            + (", or unset TASKCTL_ENV" if origin == "TASKCTL_ENV" else ""),
        )
    selected: dict[str, Any] = {}
    if selected_name:
        if selected_name not in envs:
            where = str(path) if path else "no config file found"
            known = ", ".join(sorted(envs)) or "none"
            raise UsageError(
                f"unknown environment {selected_name!r} ({where}; environments: {known})",
                hint="define [env.NAME] in the config file, or run 'taskctl local up' for 'local'",
            )
        selected = dict(envs[selected_name])
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, (flag, tvar, cvar) in SETTINGS.items():
        if flags.get(name) not in (None, ""):
            values[name], sources[name] = flags[name], f"flag {flag}"
        elif selected.get(name) not in (None, ""):
            values[name], sources[name] = selected[name], f"file {path} [env.{selected_name}]"
        elif environ.get(tvar):
            values[name], sources[name] = environ[tvar], f"environment {tvar}"
        elif cvar and environ.get(cvar) and not selected_name:
            values[name], sources[name] = environ[cvar], f"environment {cvar}"
        elif default_section.get(name) not in (None, ""):
            values[name], sources[name] = default_section[name], f"file {path} [default]"
        elif name in BUILTIN_DEFAULTS:
            values[name], sources[name] = BUILTIN_DEFAULTS[name], "built-in default"

    # An explicitly selected environment must not fall through to CELERY_* (production) values: when
    # it selects nothing for a URL, the CELERY_* variable is ignored and the file default / built-in wins.
    def merged(key: str) -> dict[str, Any]:
        out = dict(default_section.get(key, {}))
        out.update(selected.get(key, {}))
        return out

    known_keys = set(SETTINGS) | {"transport_options", "result_transport_options"}
    extra = {k: v for k, v in {**default_section, **selected}.items() if k not in known_keys}
    return Settings(
        backend=values.get("backend"),
        broker=values.get("broker", DEFAULT_BROKER),
        endpoint_url=values.get("endpoint_url"),
        region=values.get("region"),
        aws_profile=values.get("aws_profile"),
        management_url=values.get("management_url"),
        serializer=values.get("serializer"),
        key_prefix=values.get("key_prefix"),
        env=selected_name,
        config_file=path,
        transport_options=merged("transport_options"),
        result_transport_options=merged("result_transport_options"),
        sources=sources,
        extra=extra,
    )


# The config file is the user's: `local up` and `local down --purge` change [env.NAME] and leave every other byte
# (comments, order, blank lines, quoting) as it was. tomlkit keeps a document's layout; tomllib still reads it.


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8") if path.is_file() else ""
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc.strerror}") from None


def _parse_doc(text: str, path: Path) -> Any:
    import tomlkit
    from tomlkit.exceptions import ParseError

    try:
        return tomlkit.parse(text)
    except ParseError as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from None


def _write_text(path: Path, text: str) -> None:
    """Atomically: a crash or a full disk never leaves half a config file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _valid(text: str) -> bool:
    import tomllib

    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return False
    return True


def save_environment(name: str, values: dict[str, Any], path: Path | None = None) -> Path:
    """Write (or replace) ``[env.NAME]`` in the user config file, keeping every other byte of it."""
    import tomlkit

    target = path or user_config_path()
    text = _read_text(target)
    doc = _parse_doc(text, target)
    envs = doc.get("env")
    if isinstance(envs, dict) and name in envs:
        envs[name] = values  # replaced where it stands
        out = tomlkit.dumps(doc)
    else:
        # appended as text: inserting through tomlkit would also change the whitespace of what precedes it
        section = tomlkit.dumps({"env": {name: values}})
        sep = "" if not text.strip() else ("\n" if text.endswith("\n") else "\n\n")
        out = (text if text.strip() else "") + sep + section
        if not _valid(out):  # e.g. `env` written as an inline table: let tomlkit place it
            doc.setdefault("env", {})[name] = values
            out = tomlkit.dumps(doc)
    _write_text(target, out)
    return target


def remove_environment(name: str, path: Path | None = None) -> bool:
    """Remove ``[env.NAME]`` (and the blank line `save_environment` put before it); False when there is none."""
    from tomlkit.items import Table

    target = path or user_config_path()
    if not target.is_file():
        return False
    text = _read_text(target)
    doc = _parse_doc(text, target)
    envs = doc.get("env")
    if not isinstance(envs, dict) or name not in envs:
        return False
    del envs[name]
    if not envs and isinstance(envs, Table) and envs.is_super_table():
        del doc["env"]
    out = doc.as_string()
    if text.startswith(out) and out.endswith("\n\n"):  # it was the end of the file: drop its separator too
        out = out[:-1]
    _write_text(target, out)
    return True


_current: contextvars.ContextVar[Settings | None] = contextvars.ContextVar("taskctl_settings", default=None)
_resolver: contextvars.ContextVar[Any] = contextvars.ContextVar("taskctl_resolver", default=None)


def set_resolver(fn: Any) -> None:
    """The CLI registers a zero-argument function resolving settings on first use (keeps --help cheap)."""
    _resolver.set(fn)
    _current.set(None)


def current() -> Settings:
    """The settings of this run, resolved on first use."""
    s = _current.get()
    if s is None:
        fn = _resolver.get()
        s = fn() if fn is not None else resolve()
        _current.set(s)
    return s
