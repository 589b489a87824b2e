-- POST /api/agents with a unique name per request (per wrk thread, per round).
-- Arguments after "--": <name prefix>. The Authorization header comes from wrk -H.
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
end

function init(args)
  prefix = args[1] or "agent"
  counter = 0
end

function request()
  counter = counter + 1
  local body = '{"name": "' .. prefix .. "-" .. tid .. "-" .. counter .. '", "model": "test", '
    .. '"description": "benchmark", "tools": [{"name": "calculator"}]}'
  -- wrk.format uses the given headers instead of wrk.headers (from -H), so copy those in.
  local headers = { ["Content-Type"] = "application/json" }
  for name, value in pairs(wrk.headers) do
    headers[name] = value
  end
  return wrk.format("POST", "/api/agents", headers, body)
end
