-- GET the newest page of 20 todos.
wrk.path = "/api/v1/todos?limit=20"
