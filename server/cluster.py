"""Rooms shared by several signaller processes, in Redis (``ipymeet serve --redis URL``).

Each process is a *node* with a random id. The rooms live in Redis and change only through Lua
scripts, which Redis runs one at a time: so a room's capacity holds when members enter on
different nodes at the same moment, and a dead node's members are removed (and announced) once.
python-socketio's ``AsyncRedisManager`` carries the events between the nodes: an emit to a sid
that another node holds is published, and that node writes it to the socket. What a node
delivers to its own connections never goes through Redis, and a member it holds is found in its
own memory (``local``): a signal between two members of one node asks Redis nothing.

Keys (``ipymeet:`` then):

- ``room:ROOM``, a hash: ``_d`` the dialect, ``_n`` how many members, ``_q`` the arrival counter;
  ``m:ID`` each member as JSON ``{sid, name, client, id, node, seq}``; ``s:SID`` its id.
  Deleted with its last member.
- ``node:NODE``, the node's heartbeat: set every :data:`HEARTBEAT` s, expiring after :data:`TTL`.
- ``node:NODE:rooms``, a hash: for each room, how many of its members that node holds.
- ``nodes``, a set of the nodes' ids; ``events``, the Socket.IO manager's pub/sub channel.

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
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import socketio
from redis import asyncio as aioredis
from redis.exceptions import RedisError

from .registry import TUTORIAL, Departure, Member, Registry
from .validation import Refused

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
_REMOVE = """
local id = redis.call('HGET', KEYS[1], 's:' .. ARGV[3])
if not id then return {} end
local member = redis.call('HGET', KEYS[1], 'm:' .. id)
redis.call('HDEL', KEYS[1], 's:' .. ARGV[3], 'm:' .. id)
local d = redis.call('HGET', KEYS[1], '_d')
local nodes = ARGV[1] .. 'node:' .. cjson.decode(member)['node'] .. ':rooms'
if redis.call('HINCRBY', nodes, ARGV[2], -1) <= 0 then redis.call('HDEL', nodes, ARGV[2]) end
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
  local gone, staying = {}, {}
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 2) == 'm:' then
      local member = cjson.decode(all[i + 1])
      if member['node'] == ARGV[2] then
        redis.call('HDEL', key, all[i], 's:' .. member['sid'])
        table.insert(gone, all[i + 1])
      else
        table.insert(staying, all[i + 1])
      end
    end
  end
  if #gone > 0 then
    local d = redis.call('HGET', key, '_d')
    if redis.call('HINCRBY', key, '_n', -#gone) <= 0 then redis.call('DEL', key) end
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


def _member(raw: bytes | str) -> tuple[int, Member]:
    data = json.loads(raw)
    member = Member(data["sid"], data["name"], data["client"], data["id"], data["node"])
    return int(data.get("seq", 0)), member


def _members(raws: list[Any]) -> list[Member]:
    """Members in arrival order."""
    return [m for _, m in sorted((_member(raw) for raw in raws), key=lambda pair: pair[0])]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Cluster:
    """The :class:`~server.registry.Rooms` of a node: the rooms in Redis, and ``local``, this
    node's memory of its own members (which the kernel-facing readers and ``/healthz`` see).

    Example (what the signaller does with ``Settings(redis_url=...)``)::

        cluster = Cluster("redis://127.0.0.1:6379/0")
        sio = socketio.AsyncServer(client_manager=cluster.manager(), ...)
        await cluster.start(sio, announce, drop_all)   # the app's start-up
        await cluster.close()                          # its shutdown, after the disconnects
    """

    def __init__(
        self, url: str, *, heartbeat: float = HEARTBEAT, ttl: float = TTL, prefix: str = PREFIX
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

    def _room_key(self, room: str) -> str:
        return f"{self.prefix}room:{room}"

    def _node_key(self, node: str) -> str:
        return f"{self.prefix}node:{node}"

    # -- the node's life ------------------------------------------------------------------------

    def manager(self) -> socketio.AsyncRedisManager:
        """The Socket.IO client manager that carries events between the nodes."""
        # Its own logger, quiet: while Redis is lost it would log every publish that fails; this
        # module says it once. No read timeout: its subscription waits for messages indefinitely.
        quiet = logging.getLogger("ipymeet.server.pubsub")
        quiet.setLevel(logging.CRITICAL)
        return socketio.AsyncRedisManager(
            self.url,
            channel=self.channel,
            logger=quiet,
            redis_options={"socket_connect_timeout": REDIS_TIMEOUT},
        )

    async def start(self, sio: socketio.AsyncServer, announce: Announce, drop_all: DropAll) -> None:
        """Beat for the first time, start hearing the other nodes' events, and keep beating
        (and looking for dead nodes) until :meth:`close`. Raises ConnectionError when Redis
        cannot be reached."""
        self._sio, self._announce, self._drop_all = sio, announce, drop_all
        try:
            await self._beat_once(first=True)
            listening = int((await self.redis.pubsub_numsub(self.channel))[0][1])
        except (RedisError, OSError) as exc:
            raise ConnectionError(f"cannot reach Redis at {shown_url(self.url)}: {exc}") from None
        # python-socketio subscribes at the first connection (``manager_initialized`` is the flag
        # its server checks, in every 5.x release). A member's first events from other nodes
        # would be lost until then, so it subscribes now, and start-up waits until it has.
        if not sio.manager_initialized:
            sio.manager_initialized = True
            sio.manager.initialize()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while int((await self.redis.pubsub_numsub(self.channel))[0][1]) <= listening:
            if loop.time() > deadline:
                raise ConnectionError(f"could not subscribe to {self.channel} on Redis")
            await asyncio.sleep(0.02)
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
        listener = getattr(self._sio.manager, "thread", None) if self._sio is not None else None
        if isinstance(listener, asyncio.Task):
            listener.cancel()
        with contextlib.suppress(Exception):
            await self.redis.aclose()

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
            remaining = _members(staying)
            for member in _members(gone):
                departures.append(Departure(_text(room), int(dialect), remaining, member))
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
        return _members(answer[1:])

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
        _, member = _member(answer[1])
        return Departure(room, int(answer[0]), _members(answer[2:]), member)

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
        raws = [value for key, value in fields.items() if _text(key).startswith("m:")]
        return int(fields[b"_d"]), _members(raws)

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
        return None if raw is None else _member(raw)[1]

    def rooms_of(self, sid: str, dialect: int | None = None) -> list[str]:
        return self.local.rooms_of(sid, dialect)

    def is_member(self, room: str, sid: str) -> bool:
        return self.local.is_member(room, sid)
