//! The Lua scripts: each change to a topic in Redis is one of them, so it
//! is atomic (two servers publishing at once never share or skip an id).
//!
//! Numbers are written with `%d`: Lua 5.1 would print large ones in
//! exponent form.

use std::sync::LazyLock;

use redis::Script;

/// Claims the topic for a new life when Redis holds nothing (`ARGV[2]`,
/// an epoch, or empty to claim nothing; a claimed topic, `ARGV[5]`, joins
/// the topics set `KEYS[3]`), refreshes the time to live
/// (`ARGV[3]`, ms), and returns `{epoch or "", max, end, entries after
/// ARGV[1] (at most ARGV[4])}`.
pub(crate) static SYNC: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local head, log = KEYS[1], KEYS[2]
if ARGV[2] ~= '' and redis.call('HSETNX', head, 'epoch', ARGV[2]) == 1 then
  redis.call('SADD', KEYS[3], ARGV[5])
end
local h = redis.call('HMGET', head, 'epoch', 'max', 'end')
if not h[1] then return {'', 0, 0, {}} end
redis.call('PEXPIRE', head, ARGV[3])
redis.call('PEXPIRE', log, ARGV[3])
local max = tonumber(h[2] or '0')
local len = redis.call('LLEN', log)
local start = tonumber(ARGV[1]) - max + len
if start < 0 then start = 0 end
local keep = tonumber(ARGV[4])
if len - start > keep then start = len - keep end
return {h[1], max, tonumber(h[3] or '0'), redis.call('LRANGE', log, start, -1)}
",
    )
});

/// Appends `ARGV[2]` (JSON, stamped `ARGV[3]`) under the next id if the
/// topic's epoch is still `ARGV[1]`, keeps the newest `ARGV[4]`, refreshes
/// the time to live (`ARGV[5]`), announces the entry on channel `ARGV[6]`,
/// and returns `{"ok", id, end, entries after ARGV[7]}` (the caller's
/// cache's max: what it lacks, this one included), or `{"other", …}` when
/// Redis holds another life or none.
pub(crate) static APPEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local head, log = KEYS[1], KEYS[2]
local epoch = redis.call('HGET', head, 'epoch')
if epoch ~= ARGV[1] then return {'other', 0, 0, {}} end
local id = redis.call('HINCRBY', head, 'max', 1)
local e = redis.call('HINCRBY', head, 'end', string.len(ARGV[2]))
local entry = string.format('%d %s %d %s', id, ARGV[3], e, ARGV[2])
redis.call('RPUSH', log, entry)
redis.call('LTRIM', log, -tonumber(ARGV[4]), -1)
redis.call('PEXPIRE', head, ARGV[5])
redis.call('PEXPIRE', log, ARGV[5])
redis.call('PUBLISH', ARGV[6], epoch .. ' ' .. entry)
local len = redis.call('LLEN', log)
local start = tonumber(ARGV[7]) - id + len
if start < 0 then start = 0 end
return {'ok', id, e, redis.call('LRANGE', log, start, -1)}
",
    )
});

/// Deletes the topic if its epoch is still `ARGV[1]` (and takes `ARGV[3]`
/// out of the topics set `KEYS[3]`), and announces `deleted EPOCH` on
/// channel `ARGV[2]`; returns 1 if it did.
pub(crate) static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SREM', KEYS[3], ARGV[3])
redis.call('PUBLISH', ARGV[2], 'deleted ' .. ARGV[1])
return 1
",
    )
});

/// Drops the entries stamped before `ARGV[1]` from the front of the log;
/// returns how many.
pub(crate) static EXPIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = 0
while true do
  local first = redis.call('LINDEX', KEYS[1], 0)
  if not first then break end
  local stamp = tonumber(string.match(first, '^%d+ (%d+) '))
  if not stamp or stamp >= tonumber(ARGV[1]) then break end
  redis.call('LPOP', KEYS[1])
  n = n + 1
end
return n
",
    )
});

/// This server (`ARGV[1]`) holds the topic with `ARGV[2]` subscribers and
/// `ARGV[3]` sessions, for `ARGV[4]` ms from Redis's clock: records it in
/// the topic's `nodes` hash (field: server, value `SUBS SESSIONS UNTIL`),
/// drops entries whose time ran out (a server that died), and returns the
/// other servers' totals `{subscribers, sessions}`.
pub(crate) static PRESENCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[4])
redis.call('HSET', KEYS[1], ARGV[1], string.format('%d %d %d', ARGV[2], ARGV[3], now + ttl))
redis.call('PEXPIRE', KEYS[1], ttl)
local all = redis.call('HGETALL', KEYS[1])
local subs, sessions = 0, 0
for i = 1, #all, 2 do
  local s, n, till = string.match(all[i + 1], '^(%d+) (%d+) (%d+)$')
  if not till or tonumber(till) < now then
    redis.call('HDEL', KEYS[1], all[i])
  elseif all[i] ~= ARGV[1] then
    subs = subs + tonumber(s)
    sessions = sessions + tonumber(n)
  end
end
return {subs, sessions}
",
    )
});

/// Whether any server's entry in the topic's `nodes` hash is still in
/// time: 1 or 0.
pub(crate) static HOLDS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local all = redis.call('HGETALL', KEYS[1])
for i = 2, #all, 2 do
  local till = string.match(all[i], ' (%d+)$')
  if till and tonumber(till) >= now then return 1 end
end
return 0
",
    )
});

/// Every topic in the topics set `KEYS[1]` (keys under prefix `ARGV[1]`)
/// that Redis still holds, as `{name, epoch, max, buffered, subscribers,
/// sessions}` (counts over every server in time); members whose keys ran
/// out are taken out of the set. It reads keys it is not given, so it
/// needs a single Redis, not a Redis Cluster.
pub(crate) static LIST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local head = ARGV[1] .. ':' .. name
  local h = redis.call('HMGET', head, 'epoch', 'max')
  if not h[1] then
    redis.call('SREM', KEYS[1], name)
  else
    local subs, sessions = 0, 0
    local all = redis.call('HGETALL', head .. ':nodes')
    for i = 1, #all, 2 do
      local s, n, till = string.match(all[i + 1], '^(%d+) (%d+) (%d+)$')
      if till and tonumber(till) >= now then
        subs = subs + tonumber(s)
        sessions = sessions + tonumber(n)
      end
    end
    table.insert(out, {name, h[1], tonumber(h[2] or '0'), redis.call('LLEN', head .. ':log'), subs, sessions})
  end
end
return out
",
    )
});
