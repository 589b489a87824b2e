-- wrk: count responses by status in every thread, and requests over one second; print both
-- after the run ("status <code>: <count>", "over_1s: <count>").
--
-- Over one second is read from wrk's latency record without a loop over its distinct values:
-- that record has one slot per microsecond up to --timeout, and `latency(i)` as well as
-- `latency:percentile(p)` walk it from its minimum each time, so a loop over `latency(i)` costs
-- (distinct values) x (max - min): minutes of wrk's CPU after a run whose latencies go from
-- milliseconds to seconds (1,000 connections against an overloaded server), during which wrk
-- prints nothing and keeps its connections open. Instead the share of the record at or under
-- one second is bisected on the percentile (about 20 walks), and the count printed is the
-- completed requests times the share above. The record is the one wrk's percentiles come
-- from, with wrk's correction for coordinated omission (samples it adds for requests a slow
-- response held back), so it holds more samples than there were requests: the share is
-- wrk's, the count is scaled to the requests completed.
local threads = {}
local LIMIT_US = 1000000

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

local function over_limit(summary, latency)
  local completed = summary.requests
  if completed == 0 or latency.max <= LIMIT_US then
    return 0
  end
  if latency.min > LIMIT_US then
    return completed
  end
  -- percentile(low) <= LIMIT_US < percentile(high); percentile(100) is past the record.
  local low, high = 0, 100
  for _ = 1, 64 do
    if (high - low) / 100 * completed < 0.25 then break end
    local middle = (low + high) / 2
    if latency:percentile(middle) <= LIMIT_US then low = middle else high = middle end
  end
  return completed - math.floor((low + high) / 200 * completed + 0.5)
end

function done(summary, latency, requests)
  io.write(string.format("over_1s: %d\n", over_limit(summary, latency)))
  local total = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      total[status] = (total[status] or 0) + count
    end
  end
  for status, count in pairs(total) do
    io.write(string.format("status %d: %d\n", status, count))
  end
end
