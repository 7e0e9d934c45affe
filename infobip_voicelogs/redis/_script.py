"""The Lua script that is the shared bucket: GCRA, cooldown and adaptive rate in one hash.

Redis runs a script atomically, so every process and host that calls it for one account
sees one schedule, in the order Redis ran the calls. Time is Redis's own (`TIME`), in
integer microseconds: hosts with skewed clocks still share one timeline. The state is one
hash per account, under one key, set to expire once idle.

One script, four operations, so that it is loaded and run by one hash:

- ``acquire``: reserve a slot (a hole left by a cancelled caller if one is still ahead,
  else the next one); answer how long to wait for it;
- ``confirm``: a caller woke at its slot; answer how much longer to wait if a cooldown was
  set meanwhile (the cumulative ``shift`` has grown), else 0;
- ``release``: a caller was cancelled while it slept; undo its reservation if nothing was
  reserved after it (compare-and-decrement), else leave its slot as a hole for the next
  ``acquire``; a hole nobody takes before its time is lost;
- ``feedback``: nothing but the feedback every call carries.

Every call carries this process's feedback: a cooldown to apply (microseconds from Redis's
now), the slot number of a request that drew a 429 (to cut the rate), and the highest slot
number that succeeded (the evidence that lets the rate grow, and the next 429 cut it).

Arguments are two strings: the bucket's configuration (``"rate burst min_rate adaptive
ttl_ms"``, built once) and the call (``"op epoch ok_seq cool_us cut_seq a b c"``); the
answer is one string, ``"wait_us seq slot_us shift_us epoch rate"``: fewer arguments and
one bulk reply are what keep a call near the cost of a ``PING``.

Fields: ``epoch`` (the hash's creation time: slot numbers of another epoch are ignored),
``tat`` (GCRA's theoretical arrival time), ``prev`` (``tat`` before the last grant, for
``release``), ``cool`` (no slot before this), ``shift`` (the sum of every cooldown's push),
``seq`` (slots granted so far), ``rate`` (the effective rate), CUBIC's ``wmax``, ``cutat``,
``k``, ``c``, with ``cutseq`` (``seq`` at the last cut) and ``okseq``, and ``holes``.
Numbers are written with ``%.17g``: Lua's own ``tostring`` keeps 14 digits, which would
round a microsecond timestamp (16 digits).
"""

from __future__ import annotations

from ..throttle import ADAPTIVE_BETA, ADAPTIVE_MIN_RECOVERY_SLOTS, ADAPTIVE_SCALE

#: Holes kept per account; more cancelled slots than this at once are lost.
MAX_HOLES = 32

_TEMPLATE = """
local key = KEYS[1]
local cfg, burst, min_rate, adaptive, ttl_us = string.match(ARGV[1],
  '^(%S+) (%S+) (%S+) (%S+) (%S+)$')
cfg, burst, min_rate = tonumber(cfg), tonumber(burst), tonumber(min_rate)
adaptive, ttl_us = adaptive == '1', tonumber(ttl_us) * 1000
local op, epoch, ok_seq, cool_us, cut_seq, a, b, c0 = string.match(ARGV[2],
  '^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+)$')
ok_seq, cool_us, cut_seq = tonumber(ok_seq), tonumber(cool_us), tonumber(cut_seq)
a, b, c0 = tonumber(a), tonumber(b), tonumber(c0)

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

local names = {'tat', 'prev', 'cool', 'shift', 'seq', 'rate', 'wmax', 'cutat', 'k', 'c',
  'cutseq', 'okseq'}
local h = redis.call('HMGET', key, 'epoch', 'holes', unpack(names))
local ep = h[1] or string.format('%.0f', now)
local v = {}
for i = 1, #names do v[i] = tonumber(h[i + 2]) end
local tat, prev, cool, shift, seq = v[1] or 0, v[2] or -1, v[3] or 0, v[4] or 0, v[5] or 0
local rate, wmax, cutat, k, c = v[6] or cfg, v[7] or cfg, v[8] or 0, v[9] or 0, v[10] or $SCALE
local cutseq, okseq = v[11] or -1, v[12] or 0
local same = epoch == ep
-- Holes still ahead, earliest first; those already due are lost.
local holes, holes_in = {}, h[2] or ''
for x in string.gmatch(holes_in, '%S+') do
  if tonumber(x) >= now then holes[#holes + 1] = tonumber(x) end
end

-- Each caller passes its configuration; the effective rate stays within it.
if not adaptive or rate > cfg then rate = cfg end
if rate < min_rate then rate = min_rate end
if same and ok_seq > okseq then okseq = ok_seq end

-- A cooldown pushes every slot not yet due behind it, keeping their spacing: the push is
-- added to tat, to the holes and to shift, from which a sleeper that wakes learns how far
-- it was moved. The bucket restarts empty at its end (tat >= end + tau): no burst after it.
if cool_us >= 0 then
  local stop = now + cool_us
  if stop > cool then
    local push = stop - math.max(now, cool)
    cool, shift = stop, shift + push
    -- Slots are reserved up to tat - interval: if any is still ahead, all move by push.
    if tat - 1e6 / rate >= now then tat = tat + push end
    tat = math.max(tat, stop + (burst - 1) * 1e6 / rate)
    for i = 1, #holes do holes[i] = holes[i] + push end
  end
end

-- A 429 cuts the rate once per episode: only if its slot was granted after the last cut
-- (a request sent at the old rate says nothing of the new one) and a slot granted after
-- the last cut has succeeded since (a server refusing the rest of its window is not told
-- twice). CUBIC's K and C as in TokenBucket.on_rate_limited.
if adaptive and same and cut_seq > cutseq and okseq > cutseq then
  wmax = rate
  k = math.max((rate * (1 - $BETA) / $SCALE) ^ (1 / 3), $SLOTS / rate)
  c = rate * (1 - $BETA) / k ^ 3
  cutat, cutseq = now, seq
  rate = math.max(min_rate, rate * $BETA)
elseif adaptive and rate < cfg and okseq > cutseq then
  -- Growth along CUBIC's curve in Redis time since the cut, once a success says so.
  local grown = c * ((now - cutat) / 1e6 - k) ^ 3 + wmax
  if grown > rate then rate = math.min(cfg, grown) end
end

local wait, slot, answer = 0, 0, 0
if op == 'confirm' and not same then op = 'acquire' end  -- the state was lost: book anew
if op == 'acquire' and #holes > 0 then
  -- A cancelled caller's slot still ahead: reused, so that capacity is not lost.
  table.sort(holes)
  slot = table.remove(holes, 1)
  prev, seq = -1, seq + 1
  wait, answer = slot - now, seq
elseif op == 'acquire' then
  local interval = 1e6 / rate
  local tau = (burst - 1) * interval
  -- GCRA: the slot is due at tat - tau (not before a cooldown's end); tat moves one
  -- interval past the later of itself and now (no credit banked beyond the burst).
  slot = math.max(now, tat - tau, cool)
  prev = tat
  tat = math.max(tat, now, cool + tau) + interval
  seq = seq + 1
  wait, answer = slot - now, seq
elseif op == 'confirm' then
  slot = a + (shift - b)
  wait = math.max(0, slot - now)
elseif op == 'release' and same then
  if a == seq and b == shift and prev >= 0 then
    -- Compare-and-decrement: the last slot handed out, and no cooldown moved it.
    tat, prev, answer = prev, -1, 1
  elseif c0 + (shift - b) > now and #holes < $MAX_HOLES then
    holes[#holes + 1] = c0 + (shift - b)
    answer = 2
  end
end

-- Write back only what changed (a plain acquire changes tat, prev and seq).
local new = {tat, prev, cool, shift, seq, rate, wmax, cutat, k, c, cutseq, okseq}
local out = {'epoch', ep}
for i = 1, #names do
  if v[i] ~= new[i] then
    out[#out + 1] = names[i]
    out[#out + 1] = string.format('%.17g', new[i])
  end
end
for i = 1, #holes do holes[i] = string.format('%.0f', holes[i]) end
local holes_out = table.concat(holes, ' ')
if holes_out ~= holes_in then
  out[#out + 1] = 'holes'
  out[#out + 1] = holes_out
end
if #out > 2 or not h[1] then redis.call('HSET', key, unpack(out)) end
-- Idle keys go: kept while any slot or cooldown is ahead, and ttl after that.
local idle = (math.max(tat, cool, now) - now + ttl_us) / 1000 + 1
redis.call('PEXPIRE', key, string.format('%.0f', idle))
return string.format('%.0f %d %.0f %.0f %s %.17g', wait, answer, slot, shift, ep, rate)
"""

# The constants are TokenBucket's, so both buckets learn a limit the same way.
SCRIPT = (
    _TEMPLATE.replace("$BETA", repr(ADAPTIVE_BETA))
    .replace("$SCALE", repr(ADAPTIVE_SCALE))
    .replace("$SLOTS", repr(ADAPTIVE_MIN_RECOVERY_SLOTS))
    .replace("$MAX_HOLES", repr(MAX_HOLES))
)

# The common acquire in a script of its own: nothing pending from this process, the hash
# known (same epoch), no hole, no cooldown ahead and the rate at its ceiling. Then GCRA is
# all there is, and reading 8 fields instead of 14 and writing 3 keeps a call near a PING.
# Anything else answers '' and the caller runs SCRIPT: same arguments, same answer.
# ARGV[2] is "epoch ok_seq"; the arithmetic is SCRIPT's acquire with cool <= now.
FAST_ACQUIRE = """
local key = KEYS[1]
local h = redis.call('HMGET', key, 'epoch', 'holes', 'tat', 'cool', 'shift', 'seq', 'rate',
  'okseq')
local epoch, ok_seq = string.match(ARGV[2], '^(%S+) (%S+)$')
if h[1] ~= epoch or (h[2] and h[2] ~= '') then return '' end
local cfg, burst, ttl_ms = string.match(ARGV[1], '^(%S+) (%S+) %S+ %S+ (%S+)$')
cfg = tonumber(cfg)
if h[7] and tonumber(h[7]) < cfg then return '' end  -- cut: SCRIPT grows it back
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat, cool, seq = tonumber(h[3]) or 0, tonumber(h[4]) or 0, tonumber(h[6]) or 0
if cool > now then return '' end
local interval = 1e6 / cfg
local tau = (tonumber(burst) - 1) * interval
local slot = math.max(now, tat - tau)
local prev = tat
tat = math.max(tat, now, cool + tau) + interval
seq = seq + 1
ok_seq = tonumber(ok_seq)
if ok_seq > (tonumber(h[8]) or 0) then
  redis.call('HSET', key, 'tat', string.format('%.17g', tat), 'prev',
    string.format('%.17g', prev), 'seq', string.format('%.17g', seq), 'okseq',
    string.format('%.17g', ok_seq))
else
  redis.call('HSET', key, 'tat', string.format('%.17g', tat), 'prev',
    string.format('%.17g', prev), 'seq', string.format('%.17g', seq))
end
redis.call('PEXPIRE', key, string.format('%.0f', (tat - now) / 1000 + tonumber(ttl_ms) + 1))
return string.format('%.0f %d %.0f %.0f %s %.17g', slot - now, seq, slot, tonumber(h[5]) or 0,
  epoch, cfg)
"""
