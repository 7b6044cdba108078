-- Courier's first schema: tenants, API keys, devices, command requests, executions, events.
-- Times are seconds since the epoch (REAL); JSON is stored as TEXT.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    created_at  REAL NOT NULL
);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    name         TEXT NOT NULL,
    created_at   REAL NOT NULL,
    expires_at   REAL,
    revoked_at   REAL
);
CREATE INDEX ix_api_keys_tenant ON api_keys (tenant_id, created_at);

CREATE TABLE devices (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL,
    kind             TEXT NOT NULL,
    gateway_id       TEXT,
    protocol         TEXT NOT NULL,
    labels           TEXT NOT NULL,
    timezone         TEXT,
    delivery_policy  TEXT NOT NULL,
    password_hash    TEXT,
    online           INTEGER NOT NULL DEFAULT 0,
    last_seen        REAL,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL
);
CREATE INDEX ix_devices_tenant ON devices (tenant_id, id);

CREATE TABLE requests (
    seq              INTEGER PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    tenant_id        TEXT NOT NULL,
    command_type     TEXT NOT NULL,
    command          TEXT NOT NULL,
    args             TEXT NOT NULL,
    devices          TEXT NOT NULL,
    device_type      TEXT NOT NULL,
    ttl              INTEGER NOT NULL,
    timeout          REAL NOT NULL,
    ack_timeout      REAL NOT NULL,
    retry            TEXT NOT NULL,
    priority         INTEGER NOT NULL,
    issued_by        TEXT NOT NULL,
    created_at       REAL NOT NULL,
    idempotency_key  TEXT,
    body_hash        TEXT,
    skipped          TEXT NOT NULL
);
CREATE INDEX ix_requests_tenant ON requests (tenant_id, seq);
CREATE INDEX ix_requests_command ON requests (tenant_id, command, seq);
CREATE INDEX ix_requests_issuer ON requests (tenant_id, issued_by, seq);
CREATE INDEX ix_requests_created ON requests (tenant_id, created_at);
CREATE UNIQUE INDEX ix_requests_idempotency ON requests (tenant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE executions (
    seq                 INTEGER PRIMARY KEY,
    id                  TEXT NOT NULL UNIQUE,
    tenant_id           TEXT NOT NULL,
    request_id          TEXT NOT NULL,
    device_id           TEXT NOT NULL,
    route_id            TEXT NOT NULL,
    command             TEXT NOT NULL,
    state               TEXT NOT NULL,
    attempt             INTEGER NOT NULL,
    retry_max           INTEGER NOT NULL,
    retry_on            TEXT NOT NULL,
    backoff_initial     REAL NOT NULL,
    backoff_multiplier  REAL NOT NULL,
    backoff_max         REAL NOT NULL,
    priority            INTEGER NOT NULL,
    timeout             REAL NOT NULL,
    ack_timeout         REAL NOT NULL,
    created_at          REAL NOT NULL,
    updated_at          REAL NOT NULL,
    expires_at          REAL NOT NULL,
    not_before          REAL NOT NULL,
    sent_at             REAL,
    ack_deadline        REAL,
    deadline            REAL,
    wake_at             REAL,
    reason              TEXT,
    output              TEXT,
    progress            INTEGER,
    reply_floor         INTEGER NOT NULL,
    retry_of            TEXT,
    internal            INTEGER NOT NULL
);
-- Dispatch: a device's queue in send order.
CREATE INDEX ix_executions_queue ON executions (route_id, priority DESC, seq)
    WHERE state = 'QUEUED';
-- Delivery policies and the in-flight window.
CREATE INDEX ix_executions_in_flight ON executions (route_id, state)
    WHERE state IN ('SENT', 'ACKNOWLEDGED', 'IN_PROGRESS');
-- Timers: the sweeper's next deadline.
CREATE INDEX ix_executions_wake ON executions (wake_at) WHERE wake_at IS NOT NULL;
-- Queries.
CREATE INDEX ix_executions_request ON executions (request_id, seq);
CREATE INDEX ix_executions_device ON executions (device_id, seq);
CREATE INDEX ix_executions_device_state ON executions (device_id, state, seq);
CREATE INDEX ix_executions_tenant ON executions (tenant_id, seq);
CREATE INDEX ix_executions_tenant_state ON executions (tenant_id, state, seq);
-- On columns that never change: they cost an insert, never an update.
CREATE INDEX ix_executions_command ON executions (tenant_id, command, seq);
CREATE INDEX ix_executions_created ON executions (tenant_id, created_at);

-- Clustered by execution: one B-tree per event insert, a history is one range read.
-- seq orders the events of an execution (a per-process monotonic clock in nanoseconds).
CREATE TABLE events (
    execution_id  TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    tenant_id     TEXT NOT NULL,
    at            REAL NOT NULL,
    kind          TEXT NOT NULL,
    from_state    TEXT,
    to_state      TEXT NOT NULL,
    actor         TEXT NOT NULL,
    attempt       INTEGER NOT NULL,
    reason        TEXT,
    data          TEXT,
    PRIMARY KEY (execution_id, seq)
) WITHOUT ROWID;
