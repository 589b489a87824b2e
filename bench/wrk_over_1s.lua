-- wrk: after the run, print how many requests took over one second (from wrk's latency
-- record: latency(i) is the i-th distinct value in microseconds and its count).
function done(summary, latency, requests)
  local over = 0
  for i = 1, #latency do
    local value, count = latency(i)
    if value > 1000000 then over = over + count end
  end
  io.write(string.format("over_1s: %d\n", over))
end
