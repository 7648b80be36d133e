-- Alternate a create (POST) and a list (GET) of repository AI API keys.
local n = 0
local auth = "Bearer demo-acme-owner"
request = function()
  n = n + 1
  if n % 2 == 1 then
    return wrk.format("POST", "/repo/repo-acme-main/ai/apikey",
      {["Content-Type"] = "application/json", ["Authorization"] = auth},
      '{"name": "bench", "aiType": "OPENAI"}')
  end
  return wrk.format("GET", "/repo/repo-acme-main/ai/apikey", {["Authorization"] = auth})
end
