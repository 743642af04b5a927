"""Rooms shared by several signaller processes, in Redis (``ipymeet serve --redis URL``).

Each process is a *node* with a random id. The rooms live in Redis and change only through Lua
scripts, which Redis runs one at a time: so a room's capacity holds when members enter on
different nodes at the same moment, and a dead node's members are removed (and announced) once.
The node's Socket.IO client manager (:class:`Manager`) carries the events between the nodes: an
emit to a sid that another node holds is published as JSON on the events channel, and the node
that holds it checks it as it checks a client's message, then writes it to the socket. What a
node delivers to its own connections never goes through Redis, and a member it holds is found in
its own memory (``local``): a signal between two members of one node asks Redis nothing.

What is read back from Redis is not trusted further than what a client sends: members read from
a room hash, and events from the channel, are checked with server/core/validation.py's checks and
limits, and anything else is skipped, never decoded otherwise (no pickle), and logged without its
content, once per kind every :data:`DROP_LOG_EVERY` s (:class:`Drops`).

Keys (``ipymeet:`` then):

- ``room:ROOM``, a hash: ``_d`` the dialect, ``_n`` how many members, ``_q`` the arrival counter;
  ``m:ID`` each member as JSON ``{sid, name, client, id, node, seq}``; ``s:SID`` its id.
  Deleted with its last member.
- ``node:NODE``, the node's heartbeat: set every :data:`HEARTBEAT` s, expiring after :data:`TTL`.
- ``node:NODE:rooms``, a hash: for each room, how many of its members that node holds.
- ``nodes``, a set of the nodes' ids; ``events``, the pub/sub channel of the events between the
  nodes: ``{"to": SID, "event": NAME, "args": [...]}`` (an emit to that connection) or
  ``{"disconnect": SID}`` (close it: a page took its place on another node).

A node whose heartbeat has expired is dead: the first other node to see it (each looks every
heartbeat) removes its members and tells the rest of their rooms ``peer_left`` (``disconnected``).

When Redis cannot be reached while running, the node logs it once and serves what it can from
its own memory of its own members: signals between members it holds go on; entering is refused
(``internal_error``, which the page retries); leaving is remembered and written when Redis is back.
If its heartbeat expired meanwhile (the others have removed its members), it closes its
connections' sockets when Redis is back, so that the pages reconnect and enter again, and the
rooms are told the truth. docs/architecture.md says the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import socketio
from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ..core import validation as v
from ..core.registry import MESH, TUTORIAL, Departure, Member, Registry
from ..core.settings import Settings
from ..core.tuning import json_module
from ..core.validation import Refused

log = logging.getLogger("ipymeet.server")

#: Seconds between a node's heartbeats, and until an unrenewed heartbeat expires: a node killed
#: without a word has its members removed between TTL and TTL + HEARTBEAT seconds later.
HEARTBEAT, TTL = 1.0, 3.0
PREFIX = "ipymeet:"
#: Seconds a Redis command, or a connection to it, may take before Redis counts as lost.
REDIS_TIMEOUT = 2.0
#: Connections to Redis for the rooms, and how long a command may wait for one of them.
POOL, POOL_WAIT = 64, 10.0
#: The capacity the memory of a node's own members is given: Redis is the one that checks.
_UNCHECKED = 1 << 30

UNAVAILABLE = "the signaller cannot reach its room store (Redis) just now; try again in a moment"

#: Bytes a message between the nodes may take beyond the largest message a client may send
#: (``max_message_bytes``): the sid and the event name around what it relays.
ENVELOPE = 1024
#: Bytes a member's JSON in a room hash may take: its fields at their limits, escaped, and more.
MAX_MEMBER = 2048
#: Seconds between two log lines about the same kind of thing skipped from Redis.
DROP_LOG_EVERY = 600.0
#: Seconds before subscribing again when the subscription to the events channel was lost: the
#: first pause, doubling up to the last (the heartbeat logs the loss; this only tries again).
RESUBSCRIBE = (0.1, 2.0)
#: The events a node sends to another node's connections (server/core/signaller.py: the relays, and
#: ``peer_joined`` / ``peer_left``): anything else on the channel is dropped.
RELAYED = frozenset(
    {
        "signal",
        "peer_joined",
        "peer_left",
        "start_call",
        "webrtc_offer",
        "webrtc_answer",
        "webrtc_ice_candidate",
    }
)
#: A node's id as :class:`Cluster` makes it (``secrets.token_hex``), with room to grow.
NODE_RE = re.compile(r"[0-9a-f]{1,64}")

# KEYS: room. ARGV: prefix, room, id, sid, member JSON, dialect, capacity, node.
# Answers {"ok", before...} or {code}.
_ADD = """
local d = redis.call('HGET', KEYS[1], '_d')
if d and d ~= ARGV[6] then return {'wrong_dialect'} end
if redis.call('HEXISTS', KEYS[1], 'm:' .. ARGV[3]) == 1
   or redis.call('HEXISTS', KEYS[1], 's:' .. ARGV[4]) == 1 then
  return {'already_in_room'}
end
if tonumber(redis.call('HGET', KEYS[1], '_n') or '0') >= tonumber(ARGV[7]) then
  return {'room_full'}
end
local out = {'ok'}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 2) == 'm:' then table.insert(out, all[i + 1]) end
end
local member = cjson.decode(ARGV[5])
member['seq'] = redis.call('HINCRBY', KEYS[1], '_q', 1)
redis.call('HSET', KEYS[1], '_d', ARGV[6], 'm:' .. ARGV[3], cjson.encode(member),
           's:' .. ARGV[4], ARGV[3])
redis.call('HINCRBY', KEYS[1], '_n', 1)
redis.call('HINCRBY', ARGV[1] .. 'node:' .. ARGV[8] .. ':rooms', ARGV[2], 1)
return out
"""

# KEYS: room. ARGV: prefix, room, sid. Answers {} (not there) or {dialect, member, remaining...}.
# Members are decoded under pcall here and in _REAP: one that is not a signaller's JSON (written
# to Redis by someone else) must not make the script fail, which would read as Redis lost.
_REMOVE = """
local id = redis.call('HGET', KEYS[1], 's:' .. ARGV[3])
if not id then return {} end
local member = redis.call('HGET', KEYS[1], 'm:' .. id) or ''
redis.call('HDEL', KEYS[1], 's:' .. ARGV[3], 'm:' .. id)
local d = redis.call('HGET', KEYS[1], '_d') or ''
local ok, decoded = pcall(cjson.decode, member)
if ok and type(decoded) == 'table' and type(decoded['node']) == 'string' then
  local nodes = ARGV[1] .. 'node:' .. decoded['node'] .. ':rooms'
  if redis.call('HINCRBY', nodes, ARGV[2], -1) <= 0 then redis.call('HDEL', nodes, ARGV[2]) end
end
if redis.call('HINCRBY', KEYS[1], '_n', -1) <= 0 then
  redis.call('DEL', KEYS[1])
  return {d, member}
end
local out = {d, member}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 2) == 'm:' then table.insert(out, all[i + 1]) end
end
return out
"""

# KEYS: the node's heartbeat, its rooms, the node set. ARGV: prefix, node, force ("1": even if
# it still beats, for a node removing its own). Answers {} (alive) or, per room it had members
# in, {room, dialect, {gone...}, {staying...}}.
_REAP = """
if ARGV[3] ~= '1' and redis.call('EXISTS', KEYS[1]) == 1 then return {} end
local out = {}
for _, room in ipairs(redis.call('HKEYS', KEYS[2])) do
  local key = ARGV[1] .. 'room:' .. room
  local all = redis.call('HGETALL', key)
  local gone, staying, counted = {}, {}, 0
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 2) == 'm:' then
      local ok, member = pcall(cjson.decode, all[i + 1])
      if ok and type(member) == 'table' and member['node'] == ARGV[2] then
        -- _n counts the members _ADD wrote, each with its s:SID: not one written otherwise.
        if redis.call('HDEL', key, all[i], 's:' .. tostring(member['sid'])) == 2 then
          counted = counted + 1
        end
        table.insert(gone, all[i + 1])
      else
        table.insert(staying, all[i + 1])
      end
    end
  end
  if #gone > 0 then
    local d = redis.call('HGET', key, '_d') or ''
    if redis.call('HINCRBY', key, '_n', -counted) <= 0 then redis.call('DEL', key) end
    table.insert(out, {room, d, gone, staying})
  end
end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[2])
return out
"""

# KEYS: the node's heartbeat, the node set. ARGV: node, TTL in ms, first ("1": a node starting,
# or starting again). Answers 1, or 0 when the heartbeat had expired (the node was presumed dead).
_BEAT = """
local kept = redis.call('SET', KEYS[1], '1', 'PX', ARGV[2], 'XX')
if not kept then
  if ARGV[3] ~= '1' then return 0 end
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
end
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""

Announce = Callable[[Departure, str], Awaitable[None]]
DropAll = Callable[[], Awaitable[None]]


def shown_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def check_url(url: str) -> str:
    """``url`` if it is a Redis URL (``redis://``, ``rediss://``, ``unix://``), else ValueError."""
    scheme = urlsplit(url).scheme
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            f"redis URL {shown_url(url)!r}: use redis://HOST:PORT/DB, rediss://... or unix://PATH"
        )
    return url


def reach(url: str, timeout: float = 3.0) -> None:
    """Raise ConnectionError with a plain message unless the Redis at ``url`` answers a PING
    (``ipymeet serve --redis`` calls it before it starts listening)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        client.ping()
    except RedisError as exc:
        raise ConnectionError(f"cannot reach Redis at {shown_url(url)}: {exc}") from None
    finally:
        client.close()


def _text(value: bytes | str) -> str:
    # Not UTF-8 (written by someone else): replaced, so that no check below takes it for a name.
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def read_member(raw: Any) -> tuple[int, Member] | None:
    """``(seq, member)`` from a member's JSON in a room hash, checked field by field as the
    signaller checks what a client sends (server/core/validation.py); None if it is not a member a
    signaller wrote: not JSON, a field missing, of the wrong type, or over its limit."""
    if not isinstance(raw, (bytes, str)) or len(raw) > MAX_MEMBER:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # (UnicodeDecodeError is a ValueError)
        return None
    if not isinstance(data, dict):
        return None
    seq, client, node = data.get("seq"), data.get("client"), data.get("node")
    # The arrival counter starts at 1 (HINCRBY); beyond 2**53 it would not be an exact number.
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 < seq < 2**53:
        return None
    if not isinstance(client, str) or len(client) > 64:  # what a connection's auth may name
        return None
    if not isinstance(node, str) or not NODE_RE.fullmatch(node):
        return None
    try:
        sid, member_id = v.peer_id(data.get("sid")), v.peer_id(data.get("id"))
        name = v.display_name(data.get("name"))
    except Refused:
        return None
    return seq, Member(sid, name, client, member_id, node)


def read_dialect(raw: Any) -> int | None:
    """A room's ``_d`` as a dialect, or None if it is not one."""
    text = _text(raw) if isinstance(raw, (bytes, str)) else ""
    return int(text) if text in (str(TUTORIAL), str(MESH)) else None


def read_room_name(raw: Any) -> str | None:
    """A room's name as a node's ``rooms`` hash holds it: a room id (server/core/validation.py), or
    one after the one-character mark (ASCII punctuation) a dialect's rooms may be kept under."""
    name = _text(raw) if isinstance(raw, (bytes, str)) else ""
    bare = name[1:] if name[:1] and name[0].isascii() and not name[0].isalnum() else name
    return name if v.ROOM_RE.fullmatch(bare) else None


def event_message(sid: str, event: str, data: Any) -> dict[str, Any]:
    """The message on the events channel for an emit of ``event`` with ``data`` to ``sid``
    (as python-socketio reads ``data``: a tuple is several arguments, None none)."""
    args = list(data) if isinstance(data, tuple) else [] if data is None else [data]
    return {"to": sid, "event": event, "args": args}


def relayed(event: str, args: list[Any], max_sdp: int) -> Any:
    """The data of ``event`` as the signaller relays it, from the arguments another node sent,
    checked as the signaller checks a client's (the same checks and limits); Refused otherwise.

    Each event must be exactly what server/core/signaller.py sends: one argument (none for
    ``start_call``) with exactly its keys. Returns the emit's data (None for no argument).
    """
    if event == "start_call":
        if args:
            raise v.bad("'start_call' takes no argument")
        return None
    if len(args) != 1:
        raise v.bad(f"'{event}' takes exactly one argument")
    value = args[0]
    if event == "signal":
        message = v.mapping(value, "signal")
        if message.keys() == {"from", "description"}:
            description = v.session_description(message["description"], max_sdp)
            return {"from": v.peer_id(message["from"]), "description": description}
        if message.keys() == {"from", "candidate"}:
            candidate = v.ice_candidate(message["candidate"])
            return {"from": v.peer_id(message["from"]), "candidate": candidate}
        raise v.bad("a signal is {from, description} or {from, candidate}")
    if event == "peer_joined":
        joined = v.mapping(value, "peer_joined")
        if joined.keys() != {"id", "name"}:
            raise v.bad("peer_joined is {id, name}")
        return {"id": v.peer_id(joined["id"]), "name": v.display_name(joined["name"])}
    if event == "peer_left":
        left = v.mapping(value, "peer_left")
        if left.keys() == {"id", "reason"} and left["reason"] in ("left", "disconnected"):
            return {"id": v.peer_id(left["id"]), "reason": left["reason"]}
        if left.keys() == {"id", "room"}:  # dialect 1
            return {"id": v.peer_id(left["id"]), "room": v.room_id(left["room"])}
        raise v.bad("peer_left is {id, reason} or {id, room}")
    if event in ("webrtc_offer", "webrtc_answer"):
        return v.session_description(value, max_sdp, expect=event.removeprefix("webrtc_"))
    if event == "webrtc_ice_candidate":
        # Relayed whole, as from the tutorial's page: bounded by the message's size.
        return v.tutorial_candidate(value)
    raise v.bad(f"'{event}' is not relayed between processes")


class Drops:
    """What was skipped when read back from Redis, counted by kind (``counts``), and logged at
    most once per kind every :data:`DROP_LOG_EVERY` s, by kind only: whoever can write to Redis
    can neither flood the log nor write into it. The kinds are this module's own phrases."""

    def __init__(self, every: float = DROP_LOG_EVERY) -> None:
        self.every = every
        self.counts: Counter[str] = Counter()
        #: For each kind: when it was last logged, and its count then.
        self._logged: dict[str, tuple[float, int]] = {}

    def __call__(self, kind: str) -> None:
        self.counts[kind] += 1
        now = time.monotonic()
        last = self._logged.get(kind)
        if last is not None and now - last[0] < self.every:
            return
        self._logged[kind] = (now, self.counts[kind])
        log.warning(
            "ipymeet: skipped %s, read from Redis (%d of this kind since the last such line, which "
            "comes at most every %g s): only ipymeet's processes should write to this Redis "
            "(docs/deploy.md)",
            kind,
            self.counts[kind] - (last[1] if last is not None else 0),
            self.every,
        )


class Manager(socketio.AsyncManager):  # type: ignore[misc]
    """The Socket.IO client manager of a node: python-socketio's own for the connections this
    node holds; an emit to, or a disconnect of, a connection another node holds is published on
    the events channel (:meth:`Cluster.publish`), and :meth:`Cluster._receive` delivers what the
    channel brings for this node's connections once it has checked it.

    Only public methods of python-socketio's ``AsyncManager`` are overridden or called (its
    ``AsyncRedisManager`` is not used: it decodes whatever is published in its own way, which
    changed between releases, and unpickled it before 5.14). The signaller addresses
    connections only (a sid, in the default namespace), with no acknowledgement across nodes:
    an emit to anything else, or to a connection no node holds, stays on this node.
    """

    def __init__(self, cluster: Cluster) -> None:
        super().__init__()
        self.cluster = cluster

    def holds(self, sid: str) -> bool:
        """Whether this node holds the connection ``sid`` (of the default namespace): whether
        the room python-socketio names after each connection has a participant here
        (``get_participants``, which is public and counts this process's connections only)."""
        return next(iter(self.get_participants("/", sid)), None) is not None

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> None:
        room = to or room
        if (
            kwargs.get("ignore_queue")
            or namespace != "/"
            or not isinstance(room, str)
            or self.holds(room)
        ):
            await super().emit(
                event, data, namespace, room=room, skip_sid=skip_sid, callback=callback
            )
            return
        await self.cluster.publish(event_message(room, event, data))

    async def can_disconnect(self, sid: str, namespace: str) -> bool:
        if namespace != "/" or self.holds(sid):
            return bool(await super().can_disconnect(sid, namespace))
        await self.cluster.publish({"disconnect": sid})  # its node closes it
        return False

    async def deliver(self, event: str, data: Any, sid: str) -> None:
        """Write an event that came from another node, checked, to this node's ``sid``."""
        await super().emit(event, data, "/", room=sid)


class Cluster:
    """The :class:`~server.registry.Rooms` of a node: the rooms in Redis, and ``local``, this
    node's memory of its own members (which the kernel-facing readers and ``/healthz`` see).

    Example (what the signaller does with ``Settings(redis_url=...)``)::

        cluster = Cluster("redis://127.0.0.1:6379/0")
        sio = socketio.AsyncServer(client_manager=cluster.manager(), ...)
        await cluster.start(sio, announce, drop_all, max_message)   # the app's start-up
        await cluster.close()                          # its shutdown, after the disconnects
    """

    def __init__(
        self,
        url: str,
        *,
        heartbeat: float = HEARTBEAT,
        ttl: float = TTL,
        prefix: str = PREFIX,
        max_sdp: int = Settings.max_sdp_bytes,
    ) -> None:
        self.url = check_url(url)
        self.node = secrets.token_hex(8)
        self.local = Registry()
        self.heartbeat, self.ttl, self.prefix = heartbeat, ttl, prefix
        self.channel = f"{prefix}events"
        # A bounded pool that makes commands wait for a connection: redis-py's default opens one
        # more connection for every command sent while the others are busy, and a thousand
        # members entering at once then opened hundreds, timing out (benchmarks/signalling.py).
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=POOL,
            timeout=POOL_WAIT,
            socket_timeout=REDIS_TIMEOUT,
            socket_connect_timeout=REDIS_TIMEOUT,
        )
        self.redis = aioredis.Redis.from_pool(pool)
        self._add = self.redis.register_script(_ADD)
        self._remove = self.redis.register_script(_REMOVE)
        self._reap = self.redis.register_script(_REAP)
        self._beat = self.redis.register_script(_BEAT)
        #: Whether Redis is lost just now (logged once per loss).
        self.down = False
        #: Removals made while Redis was lost, written when it is back: (room, sid).
        self._pending: list[tuple[str, str]] = []
        self._announce: Announce | None = None
        self._drop_all: DropAll | None = None
        self._task: asyncio.Task[None] | None = None
        self._sio: socketio.AsyncServer | None = None
        #: What was skipped when read back from Redis, by kind (logged, bounded).
        self.drops = Drops()
        #: The limits of what comes from the events channel: a client's (server/core/validation.py).
        #: The message size is the server's own (read at :meth:`start`).
        self.max_sdp = max_sdp
        self.max_raw = Settings.max_message_bytes + ENVELOPE
        # The signaller's JSON (orjson when installed): its loads bounds integers' digits.
        self._json: Any = json_module() or json
        self._manager: Manager | None = None
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    def _room_key(self, room: str) -> str:
        return f"{self.prefix}room:{room}"

    def _node_key(self, node: str) -> str:
        return f"{self.prefix}node:{node}"

    # -- the node's life ------------------------------------------------------------------------

    def manager(self) -> Manager:
        """The Socket.IO client manager that carries events between the nodes."""
        self._manager = Manager(self)
        return self._manager

    async def start(
        self, sio: socketio.AsyncServer, announce: Announce, drop_all: DropAll, max_message: int
    ) -> None:
        """Beat for the first time, start hearing the other nodes' events, and keep beating
        (and looking for dead nodes) until :meth:`close`. Raises ConnectionError when Redis
        cannot be reached. ``max_message``: the most a client may send here (bytes)."""
        self._sio, self._announce, self._drop_all = sio, announce, drop_all
        # A message from another node may relay at most what a client may send here.
        self.max_raw = max_message + ENVELOPE
        try:
            await self._beat_once(first=True)
        except (RedisError, OSError) as exc:
            raise ConnectionError(f"cannot reach Redis at {shown_url(self.url)}: {exc}") from None
        # Start-up waits until the subscription is confirmed: a member's first events from other
        # nodes are not lost.
        self._listener = asyncio.ensure_future(self._listen())
        try:
            await asyncio.wait_for(self._subscribed.wait(), 5.0)
        except asyncio.TimeoutError:
            self._listener.cancel()
            raise ConnectionError(f"could not subscribe to {self.channel} on Redis") from None
        self._task = asyncio.ensure_future(self._keep_beating())
        shown = shown_url(self.url)
        log.info("ipymeet: node %s shares its rooms through Redis at %s", self.node, shown)

    async def close(self) -> None:
        """Stop beating and leave Redis (after the signaller disconnected its clients, whose
        departures were written): the node's keys go at once, not after the TTL."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        with contextlib.suppress(RedisError, OSError):
            if not self.down:
                await self._reap_node(self.node, force=True)
                await self.redis.delete(self._node_key(self.node))
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None
        with contextlib.suppress(Exception):
            await self.redis.aclose()

    # -- the events between the nodes --------------------------------------------------------------

    async def publish(self, message: dict[str, Any]) -> None:
        """Put a message for another node's connection on the events channel (nothing while
        Redis is lost: pub/sub keeps nothing for later, and a handler must not wait for it)."""
        if self.down:
            return
        payload = self._json.dumps(message, ensure_ascii=False, separators=(",", ":"))
        try:
            await self.redis.publish(self.channel, payload)
        except (RedisError, OSError) as exc:
            self._lost_redis(exc)

    async def _listen(self) -> None:
        """Hear the events channel until cancelled, subscribing again whenever it was lost."""
        pause = RESUBSCRIBE[0]
        while True:
            # Its own connection, with no read timeout (it waits for messages), and no retries
            # of redis-py's own: a lost connection comes back here, and this loop tries again.
            client = aioredis.Redis.from_url(
                self.url, socket_connect_timeout=REDIS_TIMEOUT, retry=Retry(NoBackoff(), 0)
            )
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                async for message in pubsub.listen():
                    if message["type"] == "subscribe":
                        pause = RESUBSCRIBE[0]
                        self._subscribed.set()
                    elif message["type"] == "message":
                        try:
                            await self._receive(message["data"])
                        except Exception:  # the channel must go on being heard
                            self.drops("a message on the events channel whose handling failed")
                            log.debug("ipymeet: handling a message failed", exc_info=True)
            except (RedisError, OSError):
                pass  # the heartbeat tells the loss of Redis (once); this only tries again
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await client.aclose()
            await asyncio.sleep(pause)
            pause = min(pause * 2, RESUBSCRIBE[1])

    async def _receive(self, raw: Any) -> None:
        """One message from the events channel: delivered if it is an event the signaller
        relays, for a connection of this node, and passes the checks a client's message would;
        else skipped, and counted in :attr:`drops`."""
        manager = self._manager
        if manager is None:
            return
        if not isinstance(raw, bytes) or len(raw) > self.max_raw:
            self.drops("a message on the events channel larger than a client may send")
            return
        try:
            message = self._json.loads(raw)
        except (ValueError, RecursionError):
            self.drops("a message on the events channel that is not JSON")
            return
        if isinstance(message, dict) and message.keys() == {"disconnect"}:
            sid = message["disconnect"]
            if isinstance(sid, str) and len(sid) <= v.MAX_PEER_ID:
                if manager.holds(sid) and self._sio is not None:
                    await self._deliver(self._sio.disconnect(sid, ignore_queue=True))
                return
        elif isinstance(message, dict) and message.keys() == {"to", "event", "args"}:
            sid, event, args = message["to"], message["event"], message["args"]
            if isinstance(sid, str) and isinstance(event, str) and isinstance(args, list):
                if len(sid) > v.MAX_PEER_ID or not manager.holds(sid):
                    return  # another node's connection (or nobody's): not this node's to judge
                if event not in RELAYED:
                    self.drops("an event the signaller never sends between processes")
                    return
                try:
                    data = relayed(event, args, self.max_sdp)
                except Refused:
                    self.drops(f"a malformed '{event}' event")
                    return
                await self._deliver(manager.deliver(event, data, sid))
                return
        self.drops("a message on the events channel not in the form of ipymeet's events")

    @staticmethod
    async def _deliver(action: Awaitable[Any]) -> None:
        try:
            await action
        except Exception:  # a connection closing meanwhile must not stop the channel
            log.debug("ipymeet: delivering an event from Redis failed", exc_info=True)

    # -- the heartbeat --------------------------------------------------------------------------

    async def _beat_once(self, *, first: bool) -> bool:
        keys = [self._node_key(self.node), f"{self.prefix}nodes"]
        kept = await self._beat(keys=keys, args=[self.node, int(self.ttl * 1000), int(first)])
        return bool(kept)

    async def _keep_beating(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                await self._tick()
            except (RedisError, OSError) as exc:
                self._lost_redis(exc)
            except Exception:  # the heartbeat must outlive any one bad turn
                log.exception("ipymeet: the cluster heartbeat failed")

    async def _tick(self) -> None:
        kept = await self._beat_once(first=False)
        if self.down:
            self.down = False
            log.warning("ipymeet: Redis is back at %s", shown_url(self.url))
        if not kept:
            await self._rejoin()
            return
        await self._flush_pending()
        for raw in await self.redis.smembers(f"{self.prefix}nodes"):
            node = _text(raw)
            if not NODE_RE.fullmatch(node):
                self.drops("a malformed node id")
                continue
            if node != self.node:
                for departure in await self._reap_node(node, force=False):
                    await self._tell(departure)

    def _lost_redis(self, exc: BaseException) -> None:
        if not self.down:
            self.down = True
            log.warning(
                "ipymeet: lost Redis at %s (%s): serving this process's own members until it is "
                "back; entering rooms is refused meanwhile",
                shown_url(self.url),
                exc,
            )

    async def _rejoin(self) -> None:
        """Our heartbeat expired (Redis was lost longer than the TTL, or this process stalled):
        the others have removed, or will remove, our members. Remove what is left of them
        ourselves, then close our connections so that their pages enter again."""
        log.warning(
            "ipymeet: node %s was presumed dead (no heartbeat for %g s): closing its connections "
            "so that their pages enter again",
            self.node,
            self.ttl,
        )
        self._pending.clear()
        for departure in await self._reap_node(self.node, force=True):
            await self._tell(departure)
        # Beating again before the pages come back: what they enter is not reaped as ours was.
        await self._beat_once(first=True)
        for sid in self.local.sids():
            self.local.remove_everywhere(sid)
        if self._drop_all is not None:
            await self._drop_all()

    async def _flush_pending(self) -> None:
        while self._pending:
            room, sid = self._pending[0]
            departure = await self._remove_in_redis(room, sid)
            self._pending.pop(0)
            if departure is not None:
                # The members on this node heard of it when it happened.
                others = [m for m in departure.remaining if m.node != self.node]
                await self._tell(replace(departure, remaining=others))

    async def _tell(self, departure: Departure) -> None:
        if self._announce is not None and departure.remaining:
            await self._announce(departure, "disconnected")

    async def _reap_node(self, node: str, *, force: bool) -> list[Departure]:
        keys = [self._node_key(node), f"{self._node_key(node)}:rooms", f"{self.prefix}nodes"]
        rooms = await self._reap(keys=keys, args=[self.prefix, node, "1" if force else "0"])
        departures = []
        for room, dialect, gone, staying in rooms:
            name, kind = read_room_name(room), read_dialect(dialect)
            if name is None or kind is None:
                self.drops("a room with a malformed name or dialect")
                continue  # its members were removed; whom to tell, and how, is unknown
            remaining = self._members(staying)
            for member in self._members(gone):
                departures.append(Departure(name, kind, remaining, member))
        if departures and node != self.node:
            log.info("ipymeet: node %s stopped beating: %d members removed", node, len(departures))
        return departures

    # -- Rooms ----------------------------------------------------------------------------------

    async def add(self, room: str, member: Member, *, dialect: int, capacity: int) -> list[Member]:
        """Put ``member`` in ``room`` in Redis (checked there, atomically), then in ``local``."""
        member = replace(member, node=self.node)
        data = {k: getattr(member, k) for k in ("sid", "name", "client", "id", "node")}
        args: list[str | int] = [self.prefix, room, member.id, member.sid, json.dumps(data)]
        args += [dialect, capacity, self.node]
        try:
            answer = await self._add(keys=[self._room_key(room)], args=args)
        except (RedisError, OSError) as exc:
            self._lost_redis(exc)
            raise Refused("internal_error", UNAVAILABLE) from None
        code = _text(answer[0])
        if code == "room_full":
            raise Refused(
                "room_full", f"room '{room}' is full (it holds {capacity})", capacity=capacity
            )
        if code != "ok":
            message = {
                "wrong_dialect": f"room '{room}' is in use by the other protocol",
                "already_in_room": f"already in room '{room}'",
            }[code]
            raise Refused(code, message)
        stale = self.local.find(room, member.id)
        if stale is not None:  # taken over on another node, its disconnect not seen yet
            self.local.remove(room, stale.sid)
        self.local.add(room, member, dialect=dialect, capacity=_UNCHECKED)
        return self._members(answer[1:])

    async def remove(self, room: str, sid: str) -> Departure | None:
        """Take ``sid`` out of ``room`` (a connection of any node: a takeover names another's)."""
        here = self.local.remove(room, sid)
        if self.down:
            return self._remember(room, sid, here)
        try:
            return await self._remove_in_redis(room, sid)
        except (RedisError, OSError) as exc:
            self._lost_redis(exc)
            return self._remember(room, sid, here)

    async def remove_everywhere(self, sid: str) -> list[Departure]:
        departures = []
        for room in self.local.rooms_of(sid):
            departure = await self.remove(room, sid)
            if departure is not None:
                departures.append(departure)
        return departures

    def _remember(self, room: str, sid: str, here: Departure | None) -> Departure | None:
        """Redis is lost: the departure as this node knows it (its own members hear it now),
        written to Redis when it is back."""
        if here is not None:
            self._pending.append((room, sid))
        return here

    async def _remove_in_redis(self, room: str, sid: str) -> Departure | None:
        answer = await self._remove(keys=[self._room_key(room)], args=[self.prefix, room, sid])
        if not answer:
            return None  # not there: taken over, or removed with a dead node
        dialect, member = read_dialect(answer[0]), read_member(answer[1])
        if dialect is None or member is None:
            self.drops("a malformed member or dialect of a room")
            return None  # removed; nobody is told of what was never a member
        return Departure(room, dialect, self._members(answer[2:]), member[1])

    async def room(self, room: str) -> tuple[int | None, list[Member]]:
        here = self.local.room(room)
        # A tutorial room holds two: when both are this node's, nobody else is in it, and each
        # of their relays needs no Redis read (benchmarks/signalling.py, pairs on one process).
        if self.down or (here[0] == TUTORIAL and len(here[1]) >= 2):
            return here
        try:
            fields = await self.redis.hgetall(self._room_key(room))
        except (RedisError, OSError) as exc:
            self._lost_redis(exc)
            return self.local.room(room)
        if not fields:
            return None, []
        dialect = read_dialect(fields.get(b"_d"))
        if dialect is None:
            self.drops("a room with a malformed dialect")
            return None, []
        raws = [value for key, value in fields.items() if _text(key).startswith("m:")]
        return dialect, self._members(raws)

    async def find(self, room: str, member_id: str) -> Member | None:
        # A member this node holds is found here, without Redis: the signals between members of
        # one process cost what they cost alone. (One taken over by another node a moment ago
        # is still here until its disconnect arrives, as its signals in flight would be.)
        here = self.local.find(room, member_id)
        if here is not None or self.down:
            return here
        try:
            raw = await self.redis.hget(self._room_key(room), f"m:{member_id}")
        except (RedisError, OSError) as exc:
            self._lost_redis(exc)
            return self.local.find(room, member_id)
        if raw is None:
            return None
        found = read_member(raw)
        if found is None:
            self.drops("a malformed member of a room")
            return None
        return found[1]

    def _members(self, raws: list[Any]) -> list[Member]:
        """The members of a room in arrival order; any that is not one is skipped."""
        members = []
        for raw in raws:
            found = read_member(raw)
            if found is None:
                self.drops("a malformed member of a room")
            else:
                members.append(found)
        return [member for _, member in sorted(members, key=lambda pair: pair[0])]

    def rooms_of(self, sid: str, dialect: int | None = None) -> list[str]:
        return self.local.rooms_of(sid, dialect)

    def is_member(self, room: str, sid: str) -> bool:
        return self.local.is_member(room, sid)
