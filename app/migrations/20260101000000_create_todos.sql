-- The baseline's migration step created no table, so every CRUD call failed until a
-- learner ran an extra command. This migration is embedded in the binary and applied at
-- start-up.
CREATE TABLE todos (
    id          UUID PRIMARY KEY,
    title       TEXT NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
    description TEXT,
    completed   BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The list endpoint pages newest first, optionally filtered by `completed`.
CREATE INDEX todos_created_at_idx ON todos (created_at DESC, id DESC);
