-- POST a new todo.
wrk.method = "POST"
wrk.path = "/api/v1/todos"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"title":"benchmark todo","description":"created by bench/bench.py"}'
