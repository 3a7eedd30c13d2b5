"""Numbered schema migrations, for SQLite and for PostgreSQL.

Each entry upgrades the schema by one version, in each engine's words; the
database records the version it is at (``PRAGMA user_version`` in SQLite, the
``assist_schema`` table in PostgreSQL). Both engines keep the same tables and
columns, so the repositories run the same SQL on either. Never edit a released
migration: add a new one to both tuples.
"""

from __future__ import annotations

from assist.store.engine import Dialect

_KEYS = """
    ALTER TABLE sessions ADD COLUMN user_key TEXT NOT NULL DEFAULT '';
    ALTER TABLE sessions ADD COLUMN registered INTEGER NOT NULL DEFAULT 1;
    CREATE INDEX sessions_key ON sessions (user_key, state);
    """
"""Migration 2: the key a request came with, so one key holds one request across restarts."""

_NODES = """
    ALTER TABLE sessions ADD COLUMN node TEXT NOT NULL DEFAULT '';
    CREATE INDEX sessions_node ON sessions (node, state);
    """
"""Migration 4: the node that holds each session (a helpdesk of several brokers)."""

SQLITE: tuple[str, ...] = (
    # 1: directory, sessions, events, audit chain.
    """
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE users (
        name        TEXT PRIMARY KEY,
        created     REAL NOT NULL,
        totp_secret TEXT
    );
    CREATE TABLE agents (
        name    TEXT PRIMARY KEY,
        created REAL NOT NULL
    );
    -- A key belongs to exactly one user or one agent: a fingerprint is unique
    -- across both roles, so a user key can never authenticate as an agent.
    CREATE TABLE keys (
        fingerprint TEXT PRIMARY KEY,
        role        TEXT NOT NULL CHECK (role IN ('user', 'agent')),
        owner       TEXT NOT NULL,
        public_key  TEXT NOT NULL,
        comment     TEXT NOT NULL DEFAULT '',
        created     REAL NOT NULL
    );
    CREATE INDEX keys_owner ON keys (role, owner);
    CREATE TABLE sessions (
        id          TEXT PRIMARY KEY,
        user        TEXT NOT NULL,
        topic       TEXT NOT NULL,
        state       TEXT NOT NULL,
        queued_at   REAL NOT NULL,
        offered_at  REAL,
        answered_at REAL,
        ended_at    REAL,
        agent       TEXT,
        requeued    INTEGER NOT NULL DEFAULT 0,
        requeues    INTEGER NOT NULL DEFAULT 0,
        verified    INTEGER NOT NULL DEFAULT 0,
        resolved    INTEGER,
        root_cause  TEXT NOT NULL DEFAULT '',
        csat        INTEGER,
        resume_hash TEXT
    );
    CREATE INDEX sessions_state ON sessions (state);
    CREATE INDEX sessions_user ON sessions (user, queued_at);
    CREATE TABLE events (
        id      INTEGER PRIMARY KEY,
        session TEXT NOT NULL,
        at      REAL NOT NULL,
        kind    TEXT NOT NULL,
        actor   TEXT NOT NULL,
        data    TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_session ON events (session, id);
    CREATE TABLE audit (
        seq     INTEGER PRIMARY KEY,
        at      REAL NOT NULL,
        actor   TEXT NOT NULL,
        action  TEXT NOT NULL,
        session TEXT,
        data    TEXT NOT NULL,
        prev    TEXT NOT NULL,
        hash    TEXT NOT NULL
    );
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    """,
    _KEYS,  # 2: the key a request came with (the same in both engines)
    # 3: invites: one-line join strings whose codes enrol a new user's key.
    """
    CREATE TABLE invites (
        code_hash  TEXT PRIMARY KEY,
        name       TEXT NOT NULL DEFAULT '',
        uses_left  INTEGER NOT NULL,
        expires_at REAL NOT NULL,
        made_by    TEXT NOT NULL,
        made_at    REAL NOT NULL
    );
    """,
    _NODES,  # 4: the node that holds each session (the same in both engines)
    # 5: where each session's recordings are (which node, which file).
    """
    CREATE TABLE recordings (
        id      TEXT PRIMARY KEY,
        session TEXT NOT NULL,
        node    TEXT NOT NULL,
        path    TEXT NOT NULL,
        started REAL NOT NULL
    );
    CREATE INDEX recordings_session ON recordings (session, started);
    """,
)
"""Migration ``i`` takes a SQLite database from version ``i`` to ``i + 1``."""

POSTGRESQL: tuple[str, ...] = (
    # 1: directory, sessions, events, audit chain. Times are seconds since the
    # epoch as DOUBLE PRECISION (PostgreSQL's REAL is 4 bytes); flags stay
    # integers so the repositories' SQL is the same as SQLite's.
    """
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE users (
        name        TEXT PRIMARY KEY,
        created     DOUBLE PRECISION NOT NULL,
        totp_secret TEXT
    );
    CREATE TABLE agents (
        name    TEXT PRIMARY KEY,
        created DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE keys (
        fingerprint TEXT PRIMARY KEY,
        role        TEXT NOT NULL CHECK (role IN ('user', 'agent')),
        owner       TEXT NOT NULL,
        public_key  TEXT NOT NULL,
        comment     TEXT NOT NULL DEFAULT '',
        created     DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX keys_owner ON keys (role, owner);
    CREATE TABLE sessions (
        id          TEXT PRIMARY KEY,
        "user"      TEXT NOT NULL,
        topic       TEXT NOT NULL,
        state       TEXT NOT NULL,
        queued_at   DOUBLE PRECISION NOT NULL,
        offered_at  DOUBLE PRECISION,
        answered_at DOUBLE PRECISION,
        ended_at    DOUBLE PRECISION,
        agent       TEXT,
        requeued    INTEGER NOT NULL DEFAULT 0,
        requeues    INTEGER NOT NULL DEFAULT 0,
        verified    INTEGER NOT NULL DEFAULT 0,
        resolved    INTEGER,
        root_cause  TEXT NOT NULL DEFAULT '',
        csat        INTEGER,
        resume_hash TEXT
    );
    CREATE INDEX sessions_state ON sessions (state);
    CREATE INDEX sessions_user ON sessions ("user", queued_at);
    CREATE TABLE events (
        id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        session TEXT NOT NULL,
        at      DOUBLE PRECISION NOT NULL,
        kind    TEXT NOT NULL,
        actor   TEXT NOT NULL,
        data    TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_session ON events (session, id);
    CREATE TABLE audit (
        seq     BIGINT PRIMARY KEY,
        at      DOUBLE PRECISION NOT NULL,
        actor   TEXT NOT NULL,
        action  TEXT NOT NULL,
        session TEXT,
        data    TEXT NOT NULL,
        prev    TEXT NOT NULL,
        hash    TEXT NOT NULL
    );
    CREATE FUNCTION assist_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
    CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
        FOR EACH ROW EXECUTE FUNCTION assist_audit_append_only();
    CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
        FOR EACH STATEMENT EXECUTE FUNCTION assist_audit_append_only();
    """,
    _KEYS,  # 2: the key a request came with (the same in both engines)
    # 3: invites: one-line join strings whose codes enrol a new user's key.
    """
    CREATE TABLE invites (
        code_hash  TEXT PRIMARY KEY,
        name       TEXT NOT NULL DEFAULT '',
        uses_left  INTEGER NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        made_by    TEXT NOT NULL,
        made_at    DOUBLE PRECISION NOT NULL
    );
    """,
    _NODES,  # 4: the node that holds each session (the same in both engines)
    # 5: where each session's recordings are (which node, which file).
    """
    CREATE TABLE recordings (
        id      TEXT PRIMARY KEY,
        session TEXT NOT NULL,
        node    TEXT NOT NULL,
        path    TEXT NOT NULL,
        started DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX recordings_session ON recordings (session, started);
    """,
)
"""The same migrations for PostgreSQL."""

MIGRATIONS: dict[Dialect, tuple[str, ...]] = {"sqlite": SQLITE, "postgresql": POSTGRESQL}
"""Each engine's migrations."""

VERSION = len(SQLITE)
"""The schema version this program writes."""
assert len(POSTGRESQL) == VERSION, "every migration is written for both engines"
