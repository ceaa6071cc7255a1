"""kombu's Redis layout, computed from the transport options as kombu computes it (no kombu helper called).

- A queue is a list per priority step: ``<prefix><queue>`` for step 0, ``<prefix><queue>\\x06\\x16<step>`` for the
  others (``priority_steps``, default 0 3 6 9). kombu publishes with LPUSH and consumes with BRPOP over the steps in
  the order given, so the right end of the first step's list is what a worker receives next.
- Bindings: a set ``<prefix>_kombu.binding.<exchange>`` of ``routing_key\\x06\\x16pattern\\x06\\x16queue``.
- Delivered, not acked: hash ``<prefix>unacked`` (tag -> JSON ``[payload, exchange, routing_key]``) and sorted set
  ``<prefix>unacked_index`` (tag -> delivery time), restored after ``visibility_timeout`` seconds by kombu's
  ``restore_visible`` with RPUSH: back at the consuming end.
- taskctl's own in-flight lists (a drain or move holds these messages): ``<prefix>taskctl.inflight.<queue>.<token>``,
  listed in the set ``<prefix>taskctl.inflight``, each alive while ``<prefix>taskctl.lease.<queue>.<token>`` exists.

Every message is the JSON envelope kombu's virtual transport stores; :func:`to_raw` turns it into a RawMessage.
"""

from __future__ import annotations

import base64
import json
from bisect import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from taskctl.formats.message import RawMessage

SEP = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)
#: kombu's virtual channel: priorities are clamped to 0..9; 0 when missing or not a number
MIN_PRIORITY, MAX_PRIORITY, DEFAULT_PRIORITY = 0, 9, 0
VISIBILITY_TIMEOUT = 3600.0
#: the envelope keys kombu keeps in ``properties`` that are transport, not message
ENVELOPE = ("body_encoding", "delivery_tag", "delivery_info")
#: a stored message larger than this is shown as undecodable rather than parsed (bounded memory per item)
MAX_ENVELOPE = 64 * 1024 * 1024


@dataclass(frozen=True)
class Layout:
    """Key names for one Redis broker, from its transport options."""

    prefix: str = ""
    steps: tuple[int, ...] = PRIORITY_STEPS
    unacked: str = "unacked"
    unacked_index: str = "unacked_index"
    unacked_mutex: str = "unacked_mutex"
    visibility_timeout: float = VISIBILITY_TIMEOUT

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Layout:
        steps = options.get("priority_steps") or PRIORITY_STEPS
        return cls(
            prefix=str(options.get("global_keyprefix") or ""),
            steps=tuple(int(s) for s in steps),
            unacked=str(options.get("unacked_key") or "unacked"),
            unacked_index=str(options.get("unacked_index_key") or "unacked_index"),
            unacked_mutex=str(options.get("unacked_mutex_key") or "unacked_mutex"),
            visibility_timeout=float(options.get("visibility_timeout") or VISIBILITY_TIMEOUT),
        )

    def step(self, priority: int) -> int:
        """kombu's ``priority()``: the step at or below PRIORITY (the last step when none is)."""
        return self.steps[bisect(self.steps, priority) - 1]

    def queue_key(self, queue: str, priority: int = 0) -> str:
        step = self.step(priority)
        return f"{self.prefix}{queue}{SEP}{step}" if step else f"{self.prefix}{queue}"

    def queue_keys(self, queue: str) -> list[str]:
        """Every list of QUEUE, in the order workers receive from them (BRPOP's key order)."""
        return [self.queue_key(queue, s) for s in self.steps]

    def key(self, name: str) -> str:
        return self.prefix + name

    def binding_key(self, exchange: str) -> str:
        return f"{self.prefix}_kombu.binding.{exchange}"

    @property
    def binding_match(self) -> str:
        return glob_escape(self.prefix) + "_kombu.binding.*"

    @property
    def inflight_set(self) -> str:
        return self.prefix + "taskctl.inflight"

    def inflight_key(self, queue: str, token: str) -> str:
        return f"{self.prefix}taskctl.inflight.{queue}.{token}"

    def lease_key(self, queue: str, token: str) -> str:
        return f"{self.prefix}taskctl.lease.{queue}.{token}"

    def parse_inflight(self, key: str) -> tuple[str, str] | None:
        """(queue, token) of an in-flight list key; None when it is not one (the token never holds a dot)."""
        head = self.prefix + "taskctl.inflight."
        if not key.startswith(head):
            return None
        queue, dot, token = key[len(head) :].rpartition(".")
        return (queue, token) if dot and queue and token else None


def glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def message_priority(payload: Any) -> int:
    """kombu's ``_get_message_priority``: properties.priority clamped to 0..9, 0 when unreadable."""
    try:
        return max(min(int(payload["properties"]["priority"]), MAX_PRIORITY), MIN_PRIORITY)
    except (TypeError, ValueError, KeyError, OverflowError):
        return DEFAULT_PRIORITY


def parse_member(member: bytes | str) -> tuple[str, str, str] | None:
    """A binding set member as (routing_key, pattern, queue); None when it is not one."""
    text = member.decode("utf-8", "replace") if isinstance(member, bytes) else member
    parts = text.split(SEP)
    if len(parts) != 3:
        return None
    return parts[0], parts[1], parts[2]


def loads(item: bytes) -> Any:
    """A stored JSON value, or None when it is too large or not JSON (untrusted data never raises)."""
    if len(item) > MAX_ENVELOPE:
        return None
    try:
        return json.loads(item)
    except (ValueError, RecursionError, UnicodeDecodeError):
        return None


def to_raw(item: bytes) -> tuple[RawMessage, str | None]:
    """A stored kombu envelope as the message it carries, and a problem (None when it decoded)."""
    payload = loads(item)
    if not isinstance(payload, dict):
        return RawMessage(body=bytes(item)), "not a kombu message envelope: kept as the body"
    return payload_to_raw(payload)


def payload_to_raw(payload: Mapping[str, Any]) -> tuple[RawMessage, str | None]:
    problem = None
    props = payload.get("properties")
    props = dict(props) if isinstance(props, dict) else {}
    info = props.get("delivery_info")
    info = info if isinstance(info, dict) else {}
    headers = payload.get("headers")
    headers = dict(headers) if isinstance(headers, dict) else {}
    body: Any = payload.get("body", b"")
    ctype, cenc = payload.get("content-type"), payload.get("content-encoding")
    if props.get("body_encoding") == "base64" and isinstance(body, str):
        try:
            body = base64.b64decode(body, validate=False)
        except ValueError:
            problem = "body is not valid base64: kept as stored"
            body = body.encode("utf-8", "surrogateescape")
    elif isinstance(body, str):
        body = body.encode(cenc if isinstance(cenc, str) and cenc.lower() in ("utf-8", "utf8") else "utf-8", "replace")
    elif not isinstance(body, bytes):
        body = json.dumps(body).encode()
    redelivered = bool(payload.get("redelivered") or headers.get("redelivered") or info.get("redelivered"))
    raw = RawMessage(
        body=bytes(body),
        content_type=ctype if isinstance(ctype, str) else None,
        content_encoding=cenc if isinstance(cenc, str) else None,
        headers=headers,
        properties={k: v for k, v in props.items() if k not in ENVELOPE},
        exchange=str(info.get("exchange") or ""),
        routing_key=str(info.get("routing_key") or ""),
        redelivered=redelivered,
    )
    return raw, problem


def lookup(exchange: str, routing_key: str, table: Sequence[tuple[str, str, str]]) -> list[str]:
    """kombu's ``_lookup`` for a restore: the default exchange routes to the queue named by the routing key;
    another exchange to the queues bound with that routing key (kombu treats an exchange it has not seen
    declared as direct, as a restore in a worker does)."""
    if not exchange:
        return [routing_key] if routing_key else []
    return sorted({q for rk, _pattern, q in table if rk == routing_key and q})


def redelivered_payload(payload: dict[str, Any]) -> bytes:
    """What kombu's ``_do_restore_message`` pushes: the payload marked redelivered."""
    try:
        payload["headers"]["redelivered"] = True
        payload["properties"]["delivery_info"]["redelivered"] = True
    except (KeyError, TypeError):
        pass
    return json.dumps(payload).encode()


#: Moves up to ARGV[1] messages from the queue's lists (KEYS[4..], in the order workers receive from them) into
#: in-flight list KEYS[1], in one step: the right end of KEYS[1] is the first taken. Registers KEYS[1] in set
#: KEYS[2] and refreshes lease KEYS[3] to ARGV[2] ms with value ARGV[3]. Returns the messages, first taken first.
FETCH = """
local n = tonumber(ARGV[1])
local out = {}
for i = 4, #KEYS do
  if #out >= n then break end
  local got = redis.call('RPOP', KEYS[i], n - #out)
  if got then
    for _, v in ipairs(got) do out[#out + 1] = v end
  end
end
redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[2])
if #out > 0 then
  redis.call('SADD', KEYS[2], KEYS[1])
  for i = 1, #out, 500 do
    redis.call('LPUSH', KEYS[1], unpack(out, i, math.min(i + 499, #out)))
  end
end
return out
"""

#: Acks the ARGV[1] oldest messages of in-flight list KEYS[1] (its right end) and refreshes lease KEYS[2] to ARGV[4]
#: ms with value ARGV[3], only if the list still holds the ARGV[2] messages its consumer put there: -1 when it was
#: put back meanwhile (its consumer stalled past the lease), and trimming by count would drop messages not yet safe.
ACK = """
local len = redis.call('LLEN', KEYS[1])
if len ~= tonumber(ARGV[2]) then return -1 end
redis.call('LTRIM', KEYS[1], 0, -(tonumber(ARGV[1]) + 1))
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
return len - tonumber(ARGV[1])
"""

#: Puts in-flight list KEYS[1] back at the consuming end of its queue, each message into its priority list, and
#: deletes it, in one step; refused (-1) while lease KEYS[3] exists unless ARGV[4] is "force". KEYS[2]: the set
#: of in-flight lists. ARGV[1]: the queue's key (prefix + name), ARGV[2]: the priority separator, ARGV[3]: the
#: priority steps, comma separated. Returns how many messages went back.
RECOVER = """
if ARGV[4] ~= 'force' and redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
local steps = {}
for s in string.gmatch(ARGV[3], '[^,]+') do steps[#steps + 1] = tonumber(s) end
local items = redis.call('LRANGE', KEYS[1], 0, -1)
for _, v in ipairs(items) do
  local pri = 0
  local ok, m = pcall(cjson.decode, v)
  if ok and type(m) == 'table' and type(m['properties']) == 'table' then
    pri = tonumber(m['properties']['priority']) or 0
    pri = math.floor(math.max(0, math.min(9, pri)))
  end
  local step = steps[#steps]
  for _, s in ipairs(steps) do if s <= pri then step = s end end
  local key = ARGV[1]
  if step ~= 0 then key = key .. ARGV[2] .. tostring(step) end
  redis.call('RPUSH', key, v)
end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], KEYS[1])
if ARGV[4] == 'force' then redis.call('DEL', KEYS[3]) end
return #items
"""

#: kombu's restore of one unacked message, in one step and only if it is still there as read: KEYS[1] the unacked
#: hash, KEYS[2] its index, KEYS[3..] the lists it goes back to (RPUSH: the consuming end, as restore_visible);
#: ARGV[1] the tag, ARGV[2] the stored value as read, ARGV[3] the payload to push. 1: restored, 0: gone.
RESTORE = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur or cur ~= ARGV[2] then return 0 end
for i = 3, #KEYS do redis.call('RPUSH', KEYS[i], ARGV[3]) end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""
