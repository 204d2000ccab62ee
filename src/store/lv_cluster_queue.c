/* lv_cluster_queue.c - the cluster queue's Lua scripts (lv_cluster_queue.h): start-time fair
 * queuing on two levels, tenants by weight and within a tenant users by weight, decided inside
 * Redis so that every frontend's and worker's view of the order is the same one
 * (docs/internals/cluster.md, docs/internals/scheduler.md "Tenants").
 *
 * Invariants the scripts keep together (each script runs atomically):
 *   - a job id is in lv:q:age exactly while it is counted in lv:q:len: both change in the same
 *     script, and a decrement happens only when ZREM removed the id, so a job counted out twice
 *     (cancelled, then skipped by pop) is decremented once;
 *   - a user is in lv:q:tu:<tenant> (and in lv:q:ut, naming that tenant) exactly while its list is
 *     non-empty, with the start tag of its head job; every tag there is >= the tenant's virtual
 *     time (lv:q:tvt), so that never goes back;
 *   - a tenant is in lv:q:ten exactly while lv:q:tu:<tenant> is non-empty, with the start tag of
 *     its next job at the tenant level; every tag there is >= lv:q:vt;
 *   - lv:q:last:<tenant> (lv:q:tlast) only holds tags > the tenant's virtual time (lv:q:vt) at the
 *     time they were written; an entry at or below it says nothing (max(vt, last) = vt), so pop
 *     drops a couple of those it samples each time and enqueue drops the user's (tenant's) own:
 *     the hashes stay about as big as the set of users (tenants) who left recently, however many
 *     have ever queued. lv:q:tvt keeps one number per tenant that ever queued: tenants are made by
 *     an administrator, not by traffic;
 *   - lv:q:ready holds at most lv:q:len tokens (enqueue adds one only below it, pop and cancel
 *     trim to it, and it is deleted when the queue empties), so a queue that never empties does
 *     not grow a token list without bound. A worker that loses a token (it dies between BLPOP and pop) costs
 *     the others at most their BLPOP timeout, after which they pop anyway;
 *   - lv:q:dl has an entry only for a job whose body exists (enqueue writes it with the body, pop and
 *     cancel delete it with the body, and pop deletes the whole hash when the queue empties), so it
 *     is no bigger than the queue.
 *
 * Every script checks its arguments before its first write: Redis does not roll a script back
 * when a command fails half way, so a bad argument must not leave half a job behind. Tags are
 * written with %.17g: Lua's tostring keeps 14 digits, which would round 1/3 steps. */
#include "lv_cluster_queue.h"

#include "lv_common.h"

/* ARGV: job id, user, weight, body, enqueue wall ms[, deadline wall ms[, frontend id[, tenant[,
 * tenant weight]]]]. 1 = queued; 0 = that id already waits (its body and deadline were replaced,
 * nothing added: a retried enqueue must not queue the job twice). The deadline and frontend go to
 * lv:q:dl as "<deadline> <frontend>" so that pop can drop a stale job and say whose it was without
 * reading its body. No tenant (an older frontend) is tenant "default" of weight 1; a user already
 * waiting stays in the tenant it joined under. */
static const char ENQUEUE_LUA[] =
    "local id, user, body = ARGV[1], ARGV[2], ARGV[4]\n"
    "local w, enq = tonumber(ARGV[3]), tonumber(ARGV[5])\n"
    "local dl, fe = ARGV[6], ARGV[7] or ''\n"
    "local t, tw = ARGV[8] or 'default', tonumber(ARGV[9] or '1')\n"
    "if t == '' then t = 'default' end\n"
    "if not id or id == '' or not user or user == '' or not body or not w or not enq or\n"
    "   (dl and not string.match(dl, '^%d+$')) or string.find(fe, ' ', 1, true) or not tw or\n"
    "   #t > 64 then\n"
    "  return redis.error_reply('ERR lv enqueue: expected job id, user, weight, body, enqueue wall ms, '\n"
    "                           .. '[deadline wall ms, [frontend id, [tenant (1..64 bytes), [tenant weight]]]]')\n"
    "end\n"
    "if w < 1 then w = 1 elseif w > 1000 then w = 1000 end\n"
    "if tw < 1 then tw = 1 elseif tw > 1000 then tw = 1000 end\n"
    "local jk = 'lv:j:' .. id\n"
    "local queued = redis.call('EXISTS', jk) == 1\n"
    "redis.call('SET', jk, body)\n"
    "if dl then\n"
    "  redis.call('HSET', 'lv:q:dl', id, dl .. ' ' .. fe)\n"
    "else\n"
    "  redis.call('HDEL', 'lv:q:dl', id)\n"
    "end\n"
    "if queued then\n"
    "  return 0\n"
    "end\n"
    "redis.call('RPUSH', 'lv:q:u:' .. user, id)\n"
    "redis.call('HSET', 'lv:q:w', user, w)\n"
    "local ut = redis.call('HGET', 'lv:q:ut', user)\n"
    "if ut then t = ut end\n"
    "local tuk = 'lv:q:tu:' .. t\n"
    "if not redis.call('ZSCORE', tuk, user) then\n"
    /* a user arriving or coming back starts at its tenant's virtual time, or later if it left owing */
    "  local tvt = tonumber(redis.call('HGET', 'lv:q:tvt', t)) or 0\n"
    "  local last = tonumber(redis.call('HGET', 'lv:q:last:' .. t, user))\n"
    "  redis.call('HDEL', 'lv:q:last:' .. t, user)\n"
    "  if last and last > tvt then tvt = last end\n"
    "  redis.call('ZADD', tuk, string.format('%.17g', tvt), user)\n"
    "  redis.call('HSET', 'lv:q:ut', user, t)\n"
    "end\n"
    "redis.call('HSET', 'lv:q:tw', t, tw)\n"
    "if not redis.call('ZSCORE', 'lv:q:ten', t) then\n"
    /* the same one level up: a tenant starts at the virtual time or its own leftover tag */
    "  local vt = tonumber(redis.call('GET', 'lv:q:vt')) or 0\n"
    "  local last = tonumber(redis.call('HGET', 'lv:q:tlast', t))\n"
    "  redis.call('HDEL', 'lv:q:tlast', t)\n"
    "  if last and last > vt then vt = last end\n"
    "  redis.call('ZADD', 'lv:q:ten', string.format('%.17g', vt), t)\n"
    "end\n"
    "redis.call('ZADD', 'lv:q:age', enq, id)\n"
    "local len = redis.call('INCR', 'lv:q:len')\n"
    "if redis.call('LLEN', 'lv:q:ready') < len then\n"
    "  redis.call('RPUSH', 'lv:q:ready', '1')\n"
    "end\n"
    "return 1\n";

/* ARGV: job id, new body[, new deadline wall ms]. SET XX: only a body that still exists (the job
 * waits) is replaced. The deadline entry keeps its frontend id; a replace without a deadline drops
 * the old one (the new body's own deadline is the worker's to check), so an old deadline never makes
 * pop drop a fresher picture. */
static const char REPLACE_LUA[] =
    "local id, dl = ARGV[1], ARGV[3]\n"
    "if not id or id == '' or not ARGV[2] or (dl and not string.match(dl, '^%d+$')) then\n"
    "  return redis.error_reply('ERR lv replace: expected job id, body, [deadline wall ms]')\n"
    "end\n"
    "if not redis.call('SET', 'lv:j:' .. id, ARGV[2], 'XX') then\n"
    "  return 0\n"
    "end\n"
    "local old = redis.call('HGET', 'lv:q:dl', id)\n"
    "if dl and old then\n"
    "  redis.call('HSET', 'lv:q:dl', id, dl .. ' ' .. (string.match(old, '^%d+ (.*)$') or ''))\n"
    "elseif old then\n"
    "  redis.call('HDEL', 'lv:q:dl', id)\n"
    "end\n"
    "return 1\n";

/* ARGV: job id, user. The body decides whether the job still waits. A user whose list empties
 * leaves its tenant's set keeping its tag (it was never served, so it neither gains nor loses), and
 * a tenant whose set empties leaves the tenants' set the same way. When the caller names the wrong
 * user the id stays in that user's list without a body: pop skips it. */
static const char CANCEL_LUA[] =
    "local id, user = ARGV[1], ARGV[2]\n"
    "if not id or id == '' or not user or user == '' then\n"
    "  return redis.error_reply('ERR lv cancel: expected job id, user')\n"
    "end\n"
    "if redis.call('DEL', 'lv:j:' .. id) == 0 then\n"
    "  return 0\n"
    "end\n"
    "redis.call('HDEL', 'lv:q:dl', id)\n"
    "local len = tonumber(redis.call('GET', 'lv:q:len')) or 0\n"
    "if redis.call('ZREM', 'lv:q:age', id) == 1 and len > 0 then\n"
    "  len = redis.call('DECR', 'lv:q:len')\n"
    "end\n"
    "local uk = 'lv:q:u:' .. user\n"
    "if redis.call('LREM', uk, 1, id) == 1 and redis.call('LLEN', uk) == 0 then\n"
    "  local t = redis.call('HGET', 'lv:q:ut', user) or 'default'\n"
    "  local tuk = 'lv:q:tu:' .. t\n"
    "  local tag = tonumber(redis.call('ZSCORE', tuk, user))\n"
    "  redis.call('ZREM', tuk, user)\n"
    "  redis.call('HDEL', 'lv:q:w', user)\n"
    "  redis.call('HDEL', 'lv:q:ut', user)\n"
    "  local tvt = tonumber(redis.call('HGET', 'lv:q:tvt', t)) or 0\n"
    "  if tag and tag > tvt then\n"
    "    redis.call('HSET', 'lv:q:last:' .. t, user, string.format('%.17g', tag))\n"
    "  end\n"
    "  if redis.call('ZCARD', tuk) == 0 then\n"
    "    local ttag = tonumber(redis.call('ZSCORE', 'lv:q:ten', t))\n"
    "    redis.call('ZREM', 'lv:q:ten', t)\n"
    "    redis.call('HDEL', 'lv:q:tw', t)\n"
    "    local vt = tonumber(redis.call('GET', 'lv:q:vt')) or 0\n"
    "    if ttag and ttag > vt then\n"
    "      redis.call('HSET', 'lv:q:tlast', t, string.format('%.17g', ttag))\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if len <= 0 then\n"
    "  redis.call('DEL', 'lv:q:ready')\n"
    "elseif redis.call('LLEN', 'lv:q:ready') > len then\n"
    "  redis.call('LTRIM', 'lv:q:ready', 0, len - 1)\n"
    "end\n"
    "return 1\n";

/* ARGV: now wall ms, max jobs (1..32). nil, or {taken, stale}: taken = [id, body, ...] in fair order,
 * stale = [id, frontend id, ...]. Each turn takes the tenant with the smallest tag, in it the user
 * with the smallest tag, and looks at that user's head job, as a pop of one job would, so a batch
 * comes out in the order single pops would give. A taken job advances its user's tag by 1/user
 * weight (within the tenant; the tenant's virtual time becomes the user's old tag) and its tenant's
 * by 1/tenant weight (lv:q:vt becomes the tenant's old tag). A job past its deadline (lv:q:dl; none
 * stored = never stale here) and an id whose body is gone are removed without advancing either
 * tag: the user and its tenant keep their turn and the user's next job is looked at again.
 * The work is bounded (max taken, 64 stale, 256 without a body: only a cancel naming the wrong user
 * leaves those, so that many means something else writes the keys); the worker pops again for more. */
static const char POP_LUA[] =
    "local now, max = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "if not now or not max or max < 1 or max > 32 or max ~= math.floor(max) then\n"
    "  return redis.error_reply('ERR lv pop: expected now wall ms, max jobs 1..32')\n"
    "end\n"
    "local vt = tonumber(redis.call('GET', 'lv:q:vt')) or 0\n"
    "local len = tonumber(redis.call('GET', 'lv:q:len')) or 0\n"
    "local taken, stale, ntaken, nstale, nmissing = {}, {}, 0, 0, 0\n"
    "local served = {}\n"
    "while ntaken < max and nstale < 64 and nmissing < 256 do\n"
    "  local top = redis.call('ZRANGE', 'lv:q:ten', 0, 0, 'WITHSCORES')\n"
    "  if #top == 0 then\n"
    "    redis.call('DEL', 'lv:q:ready', 'lv:q:age', 'lv:q:dl')\n"
    "    redis.call('SET', 'lv:q:len', 0)\n"
    "    len = 0\n"
    "    break\n"
    "  end\n"
    "  local t, ttag = top[1], tonumber(top[2])\n"
    "  local tuk = 'lv:q:tu:' .. t\n"
    "  local utop = redis.call('ZRANGE', tuk, 0, 0, 'WITHSCORES')\n"
    "  if #utop == 0 then\n"
    /* cannot happen while only these scripts write: a tenant is in lv:q:ten while its set has users */
    "    redis.call('ZREM', 'lv:q:ten', t)\n"
    "    nmissing = nmissing + 1\n"
    "  else\n"
    "  local tvt = tonumber(redis.call('HGET', 'lv:q:tvt', t)) or 0\n"
    "  local user, tag = utop[1], tonumber(utop[2])\n"
    "  local uk = 'lv:q:u:' .. user\n"
    "  local id = redis.call('LPOP', uk)\n"
    "  local body, late = false, false\n"
    "  if id then\n"
    "    body = redis.call('GET', 'lv:j:' .. id)\n"
    "    redis.call('DEL', 'lv:j:' .. id)\n"
    "    if redis.call('ZREM', 'lv:q:age', id) == 1 and len > 0 then\n"
    "      len = redis.call('DECR', 'lv:q:len')\n"
    "    end\n"
    "    local dl = redis.call('HGET', 'lv:q:dl', id)\n"
    "    if dl then\n"
    "      redis.call('HDEL', 'lv:q:dl', id)\n"
    "      local d, fe = string.match(dl, '^(%d+) ?(.*)$')\n"
    "      if body and tonumber(d) and now > tonumber(d) then\n"
    "        body, late = false, true\n"
    "        nstale = nstale + 1\n"
    "        stale[2 * nstale - 1], stale[2 * nstale] = id, fe or ''\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  if not body and not late then\n"
    "    nmissing = nmissing + 1\n"
    "  end\n"
    "  local nexttag, tnext = tag, ttag\n"
    "  if body then\n"
    "    nexttag = tag + 1 / (tonumber(redis.call('HGET', 'lv:q:w', user)) or 1)\n"
    "    tnext = ttag + 1 / (tonumber(redis.call('HGET', 'lv:q:tw', t)) or 1)\n"
    "    vt, tvt = ttag, tag\n"
    "    redis.call('HSET', 'lv:q:tvt', t, string.format('%.17g', tvt))\n"
    "    served[t] = true\n"
    "    ntaken = ntaken + 1\n"
    "    taken[2 * ntaken - 1], taken[2 * ntaken] = id, body\n"
    "  end\n"
    "  if redis.call('LLEN', uk) == 0 then\n"
    "    redis.call('ZREM', tuk, user)\n"
    "    redis.call('HDEL', 'lv:q:w', user)\n"
    "    redis.call('HDEL', 'lv:q:ut', user)\n"
    "    if nexttag > tvt then\n"
    "      redis.call('HSET', 'lv:q:last:' .. t, user, string.format('%.17g', nexttag))\n"
    "    end\n"
    "  else\n"
    "    redis.call('ZADD', tuk, string.format('%.17g', nexttag), user)\n"
    "  end\n"
    "  if redis.call('ZCARD', tuk) == 0 then\n"
    "    redis.call('ZREM', 'lv:q:ten', t)\n"
    "    redis.call('HDEL', 'lv:q:tw', t)\n"
    "    if tnext > vt then\n"
    "      redis.call('HSET', 'lv:q:tlast', t, string.format('%.17g', tnext))\n"
    "    end\n"
    "  else\n"
    "    redis.call('ZADD', 'lv:q:ten', string.format('%.17g', tnext), t)\n"
    "  end\n"
    "  end\n"
    "end\n"
    /* leftover tags at or below their virtual time say nothing: drop a couple of those sampled */
    "local function prune(key, upto)\n"
    "  local old = redis.call('HRANDFIELD', key, 2, 'WITHVALUES')\n"
    "  for i = 1, #old, 2 do\n"
    "    if (tonumber(old[i + 1]) or 0) <= upto then\n"
    "      redis.call('HDEL', key, old[i])\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if ntaken > 0 then\n"
    "  redis.call('SET', 'lv:q:vt', string.format('%.17g', vt))\n"
    "  prune('lv:q:tlast', vt)\n"
    "  for t in pairs(served) do\n"
    "    prune('lv:q:last:' .. t, tonumber(redis.call('HGET', 'lv:q:tvt', t)) or 0)\n"
    "  end\n"
    "end\n"
    "if nstale > 0 then\n"
    "  redis.call('INCRBY', 'lv:stat:stale', nstale)\n"
    "end\n"
    "if len <= 0 then\n"
    "  redis.call('DEL', 'lv:q:ready')\n"
    "elseif redis.call('LLEN', 'lv:q:ready') > len then\n"
    "  redis.call('LTRIM', 'lv:q:ready', 0, len - 1)\n"
    "end\n"
    "if ntaken == 0 and nstale == 0 then\n"
    "  return false\n"
    "end\n"
    "return {taken, stale}\n";

/* ARGV: none. Lua numbers come back as integers (truncated): wall ms fit exactly. */
static const char STATS_LUA[] =
    "local oldest = redis.call('ZRANGE', 'lv:q:age', 0, 0, 'WITHSCORES')\n"
    "return {tonumber(redis.call('GET', 'lv:q:len')) or 0, tonumber(oldest[2]) or 0,\n"
    "        tonumber(redis.call('GET', 'lv:stat:stale')) or 0}\n";

int lv_cq_scripts_add(lv_redis_t *r, lv_cq_scripts_t *out)
{
    int rc;
    if ((rc = lv_redis_script_add(r, ENQUEUE_LUA, &out->enqueue)) != 0 ||
        (rc = lv_redis_script_add(r, REPLACE_LUA, &out->replace)) != 0 ||
        (rc = lv_redis_script_add(r, CANCEL_LUA, &out->cancel)) != 0 ||
        (rc = lv_redis_script_add(r, POP_LUA, &out->pop)) != 0 ||
        (rc = lv_redis_script_add(r, STATS_LUA, &out->stats)) != 0)
        return rc;
    return 0;
}
