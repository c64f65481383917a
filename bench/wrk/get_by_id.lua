-- GET one todo by id, uniformly over the 1,000 seeded rows (ids ...-000000000000 to ...-000000000999).
math.randomseed(os.time())
request = function()
  return wrk.format("GET", string.format("/api/v1/todos/00000000-0000-4000-8000-%012d", math.random(0, 999)))
end
