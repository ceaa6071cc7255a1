"""Secrets in URLs are never printed, however the URL is written; URLs parsers could misread are refused.

The property tests generate passwords of any printable characters (with the URL delimiters @ / # ? : ; % & [ ]
weighted in) and put them, raw and percent-encoded, into every URL form taskctl reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from taskctl import config, urls
from taskctl.errors import UsageError

MARK = "\x00"

#: every URL form taskctl reads; MARK stands where the password goes; True: the URL goes to kombu
FORMS: list[tuple[str, bool]] = [
    (f"amqp://user:{MARK}@rabbit.example:5672//", True),
    (f"pyamqp://user:{MARK}@rabbit.example/vhost", True),
    (f"redis://:{MARK}@redis.example:6379/0", True),
    (f"rediss://user:{MARK}@redis.example:6380/1?ssl_cert_reqs=required", False),
    (f"sqs://AKIAEXAMPLEKEY:{MARK}@", True),
    (f"sqs://AKIAEXAMPLEKEY:{MARK}@sqs.us-east-1.amazonaws.com/", True),
    (f"dynamodb://AKIAEXAMPLEKEY:{MARK}@us-east-1/results?read=5", False),
    (f"dynamodb://AKIAEXAMPLEKEY:{MARK}@localhost:8000/results", False),
    (f"file://user:{MARK}@/var/results", False),
    (f"amqp://a:{MARK}@h1.example//;amqp://b:other-pass@h2.example//", True),
    (f"amqp://a:other-pass@h1.example//;amqp://b:{MARK}@h2.example//", True),
    (f"amqp://guest@rabbit.example//?password={MARK}", True),
    (f"redis://redis.example:6379/0?password={MARK}", False),
    (f"sqs://?aws_access_key_id=AKIAEXAMPLEKEY&aws_secret_access_key={MARK}", False),
]

#: the fixed text every refusal is written from (urls.py itself)
MESSAGES = Path(urls.__file__).read_text(encoding="utf-8")
TEXT = "Connection to {url} refused; again: {url}"

passwords = st.text(
    alphabet=st.one_of(
        st.sampled_from("@/#?:;%&=[]+ "),
        st.characters(min_codepoint=0x21, max_codepoint=0x7E),
        st.characters(min_codepoint=0xA1, exclude_categories=("Cc", "Cs", "Zl", "Zp")),
    ),
    min_size=4,
    max_size=24,
)


def _leaks(out: str, pw: str) -> bool:
    return any(form in out for form in {pw, quote(pw, safe=""), unquote(pw)} if len(form) >= 4)


def _usable(form: str, pw: str) -> bool:
    """False when the password's text also stands elsewhere in the URL (or in the mask): nothing to prove."""
    skeleton = TEXT.format(url=form).replace(MARK, urls.MASK)
    return not any(f in skeleton or f in urls.MASK * 2 for f in {pw, quote(pw, safe=""), unquote(pw)})


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pw=passwords, which=st.sampled_from(range(len(FORMS))), encode=st.booleans())
@example(pw="RTSEC@b2@", which=0, encode=False)  # was printed as local:****@RTSECb2@
@example(pw="pa/ss", which=0, encode=False)
@example(pw="p#ss?w", which=2, encode=False)
@example(pw="ab;cd", which=0, encode=False)
@example(pw="p2-secret", which=10, encode=False)  # the second URL of a failover list
@example(pw="hunter22", which=11, encode=False)  # ?password= (kombu: TypeError)
@example(pw="hunter22", which=8, encode=False)  # file:// with user info
@example(pw="x[y]zzz", which=0, encode=False)
@example(pw="ｐａｓｓ", which=0, encode=False)  # NFKC-changed netloc: urllib's error quotes it
def test_mask_never_shows_the_password_and_parsing_is_unambiguous_or_refused(pw: str, which: int, encode: bool) -> None:
    form, to_kombu = FORMS[which]
    assume(_usable(form, pw))
    url = form.replace(MARK, quote(pw, safe="") if encode else pw)
    shown = urls.mask(url)
    assert not _leaks(shown, pw), shown
    text = urls.mask_text(TEXT.format(url=url), url)
    assert not _leaks(text, pw), text
    try:
        urls.check(url, setting="broker URL", source="flag --broker", kombu=to_kombu)
        parts = urls.parse(url)
    except UsageError as exc:  # refused, naming what to encode, and with the password masked
        if not _leaks(MESSAGES, pw):  # else the password is a phrase of the messages themselves
            assert not _leaks(f"{exc} {exc.hint}", pw), str(exc)
        return
    if "?" not in form:  # a userinfo password, when accepted, is read as kombu and redis-py read it
        from kombu.utils.url import url_to_parts

        first = urls.split_failover(url)[0]
        assert parts.password == url_to_parts(first).password
        if MARK in urls.split_failover(form)[0]:
            assert parts.password == unquote(quote(pw, safe="") if encode else pw)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("amqp://local:RTSEC@b2@127.0.0.1//", "amqp://local:****@127.0.0.1//"),
        ("amqp://a:p1xx@h1//;amqp://b:p2xx@h2//", "amqp://a:****@h1//;amqp://b:****@h2//"),
        ("amqp://u:pa/ss@h//", "amqp://****"),
        ("amqp://guest:guest@h//?heartbeat=5&password=xy&z1=2", "amqp://guest:****@h//?heartbeat=5&password=****"),
        ("redis://:pw@h/0", "redis://:****@h/0"),
        ("dynamodb://@127.0.0.1:8000/t", "dynamodb://@127.0.0.1:8000/t"),
        ("amqp://u:p@[::1]:5672//", "amqp://u:****@[::1]:5672//"),
        ("filesystem://", "filesystem://"),
    ],
)
def test_mask_examples(url: str, shown: str) -> None:
    assert urls.mask(url) == shown


@pytest.mark.parametrize(
    ("url", "names"),
    [
        ("amqp://u:pa/ss@h//", "'/' as %2F"),
        ("amqp://u:p#ss@h//", "'#' as %23"),
        ("amqp://u:p?ss@h//", "'?' as %3F"),
        ("amqp://u:ab;cd@h//", "';' as %3B"),
        ("sqs://AKIA:ab/cd@", "'/' as %2F"),
    ],
)
def test_ambiguous_urls_are_refused_naming_what_to_encode(url: str, names: str) -> None:
    with pytest.raises(UsageError) as err:
        urls.check(url, setting="broker URL", source="flag --broker")
    assert names in str(err.value.hint) and "password" in str(err.value.hint)
    assert str(err.value).startswith("ambiguous broker URL (flag --broker): ")


def test_mask_text_masks_where_the_secret_stands_not_every_occurrence() -> None:
    url = "amqp://guest:bars@127.0.0.1:5672//"
    text = f"queue 'bars08-sp' on {url}: login guest:bars@127.0.0.1 refused (password='bars')"
    assert urls.mask_text(text, url) == (
        "queue 'bars08-sp' on amqp://guest:****@127.0.0.1:5672//: login guest:****@127.0.0.1 refused (password='****')"
    )
    # a URL the caller did not name is still masked where it stands
    assert urls.mask_text("via redis://:zz-secret@r:6379/0 failed") == "via redis://:****@r:6379/0 failed"


def test_ambiguous_urls_from_any_source_are_refused_where_they_are_used(tmp_path: Any) -> None:
    """The registry checks a URL when it opens an adapter: a bad broker URL never stops a table command."""
    from taskctl import backends

    s = config.resolve(environ={"TASKCTL_BROKER_URL": "amqp://u:pa/ss@h//", "HOME": str(tmp_path)})
    with pytest.raises(UsageError, match=r"ambiguous broker URL \(environment TASKCTL_BROKER_URL\): amqp://\*\*\*\*"):
        backends.open_broker(s)
    s = config.resolve({"broker": "amqp://guest@h//?password=p"}, environ={"HOME": str(tmp_path)})
    with pytest.raises(UsageError, match="'password' cannot be a query parameter of a broker URL"):
        backends.open_control(s)
    s = config.resolve({"backend": "file://u:p@/tmp/x"}, environ={"HOME": str(tmp_path)})
    with pytest.raises(UsageError, match="a file:// URL holds a path"):
        backends.result_store(s)


NASTY = ["RTSEC@b2@x", "pa/ss:w@rd", "p#ss?w0rd;x", "bars", "ｐａｓｓ[]w"]


@pytest.mark.parametrize("pw", NASTY)
@pytest.mark.parametrize("encode", [False, True])
@pytest.mark.parametrize("command", [("doctor",), ("queue", "stats", "celery")])
def test_cli_never_prints_the_password(run: Any, pw: str, encode: bool, command: tuple[str, ...]) -> None:
    """`taskctl -v --broker URL ...` against a broker that refuses or is not there: stdout and stderr are clean."""
    secret = quote(pw, safe="") if encode else pw
    for host in ("127.0.0.1:5672", "127.0.0.1:1"):  # RabbitMQ refusing the login; nothing listening
        url = f"amqp://guest:{secret}@{host}//"
        r = run("-v", "--broker", url, "--backend", f"redis://:{secret}@127.0.0.1:1/0", *command)
        out = r.stdout + r.stderr
        assert r.exit_code != 0
        assert not _leaks(out, pw), out
        assert "Traceback" not in out and "internal error" not in out
        if not encode and any(c in pw for c in "/#?;[]"):
            # refused where the URL is used: a usage error, or doctor's failed URL check (doctor runs every check)
            assert r.exit_code == (1 if command == ("doctor",) else 2) and "percent-encode" in out
