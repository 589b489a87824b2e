-- wrk: count responses by status in every thread, and requests over one second; print both
-- after the run ("status <code>: <count>", "over_1s: <count>").
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local over = 0
  for i = 1, #latency do
    local value, count = latency(i)
    if value > 1000000 then over = over + count end
  end
  io.write(string.format("over_1s: %d\n", over))
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
