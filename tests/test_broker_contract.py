"""Every broker adapter declares every capability and method of the Broker contract.

The registry loads adapters by string, so mypy cannot see a missing capability; an operation that asks for one
would fail with an internal error on that broker only.
"""

from __future__ import annotations

import pytest

from taskctl import backends
from taskctl.backends.base import Broker

URLS = {
    "amqp": "amqp://guest:guest@127.0.0.1:5672//",
    "redis": "redis://127.0.0.1:6379/0",
    "sqs": "sqs://key:secret@127.0.0.1:1/",
    "filesystem": "filesystem://",
    "memory": "memory://",
}


def contract_names() -> list[str]:
    names = [n for n in Broker.__annotations__ if not n.startswith("_")]
    names += [n for n, v in vars(Broker).items() if callable(v) and not n.startswith("_")]
    return sorted(set(names))


@pytest.mark.parametrize("scheme", sorted(URLS))
def test_every_adapter_declares_the_whole_contract(scheme: str) -> None:
    broker = backends.broker_class(URLS[scheme]).from_url(URLS[scheme], transport_options={})
    missing = [n for n in contract_names() if not hasattr(broker, n)]
    assert missing == [], f"{type(broker).__name__} lacks {missing}"
    assert broker.scheme == scheme
    assert "secret" not in broker.masked_url


def test_every_registered_scheme_is_covered() -> None:
    assert set(backends.BROKERS) <= set(URLS)
