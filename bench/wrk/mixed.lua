-- A CRUD mix over the seeded rows: 50% read by id, 20% list, 15% create, 15% update.
math.randomseed(os.time())
local function seeded_id()
  return string.format("/api/v1/todos/00000000-0000-4000-8000-%012d", math.random(0, 999))
end
local json = { ["Content-Type"] = "application/json" }
request = function()
  local pick = math.random(100)
  if pick <= 50 then
    return wrk.format("GET", seeded_id())
  elseif pick <= 70 then
    return wrk.format("GET", "/api/v1/todos?limit=20")
  elseif pick <= 85 then
    return wrk.format("POST", "/api/v1/todos", json, '{"title":"mixed benchmark todo"}')
  else
    return wrk.format("PUT", seeded_id(), json, '{"completed":true}')
  end
end
