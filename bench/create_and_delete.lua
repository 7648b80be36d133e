-- The write workload: create an AI API key, then delete the key just created, in turn.
local created = {}
local body = '{"name":"bench","aiType":"OPENAI"}'
local json_headers = nil

request = function()
  local id = table.remove(created)
  if id then
    return wrk.format("DELETE", "/repo/repo-acme-main/ai/apikey/" .. id)
  end
  if not json_headers then
    -- wrk.format uses the headers it is given instead of wrk.headers (-H): keep both.
    json_headers = {["Content-Type"] = "application/json"}
    for name, value in pairs(wrk.headers) do
      json_headers[name] = value
    end
  end
  return wrk.format("POST", "/repo/repo-acme-main/ai/apikey", json_headers, body)
end

response = function(status, headers, response_body)
  if status < 300 then
    local id = response_body:match('"id"%s*:%s*"([^"]+)"')
    if id then
      table.insert(created, id)
    end
  end
end
