"""The server-side script that makes Redis writes newest-event-wins, atomically.

Redis runs a script without interleaving other commands, so comparing the stored timestamps and
setting the newer rows cannot race with a concurrent writer (no read-then-write from the client).
The script is sent by SHA (EVALSHA); a server that answers NOSCRIPT (first use, restart, failover)
gets it with SCRIPT LOAD and the command is retried, which is safe because the upsert is idempotent.
"""

from __future__ import annotations

import hashlib

#: Rows per script call at most: ``unpack`` of KEYS / MSET arguments is bounded by Lua's C stack (8000).
MAX_ROWS_PER_CALL = 3000

# KEYS: row keys. ARGV[1]: expiry in ms ("0" = none). ARGV[2]: "1" if no key occurs twice in KEYS.
# ARGV[i + 2]: the blob of KEYS[i], whose first 16 bytes are the little-endian i64 event and created
# timestamps (µs since the epoch). A row replaces the stored one when its event ts is newer, or equal
# with a created ts >= the stored one. Repeated keys are decided in order against the previous winner
# (the ``decided`` table); the client says when there are none, which skips that bookkeeping.
# struct.unpack yields doubles: exact for |ts| < 2^53 µs (years 1685 to 2255).
UPSERT_LUA = """
local ttl = tonumber(ARGV[1])
local stored = redis.call('MGET', unpack(KEYS))
local unpack_ts = struct.unpack
local keys, values, n = {}, {}, 0
if ARGV[2] == '1' then
  for i = 1, #KEYS do
    local new, current = ARGV[i + 2], stored[i]
    local take = true
    if current and #current >= 16 then
      local ce, cc = unpack_ts('<i8i8', current)
      local ne, nc = unpack_ts('<i8i8', new)
      take = ne > ce or (ne == ce and nc >= cc)
    end
    if take then
      n = n + 1
      keys[n], values[n] = KEYS[i], new
    end
  end
else
  local decided = {}
  for i = 1, #KEYS do
    local key, new = KEYS[i], ARGV[i + 2]
    local current = decided[key]
    if current == nil then current = stored[i] else current = values[current] end
    local take = true
    if current and #current >= 16 then
      local ce, cc = unpack_ts('<i8i8', current)
      local ne, nc = unpack_ts('<i8i8', new)
      take = ne > ce or (ne == ce and nc >= cc)
    end
    if take then
      n = n + 1
      keys[n], values[n] = key, new
      local earlier = decided[key]
      if earlier then values[earlier] = false end
      decided[key] = n
    end
  end
end
local args, m = {}, 0
for j = 1, n do
  if values[j] then
    if ttl > 0 then
      redis.call('SET', keys[j], values[j], 'PX', ttl)
    else
      args[m + 1], args[m + 2] = keys[j], values[j]
      m = m + 2
    end
  end
end
if m > 0 then redis.call('MSET', unpack(args)) end
return n
"""

UPSERT_SHA = hashlib.sha1(UPSERT_LUA.encode()).hexdigest().encode()
