-- Fleet commands: groups, command definitions, tenant settings, schedules and rollouts.

ALTER TABLE tenants ADD COLUMN timezone TEXT;

CREATE TABLE groups (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);
CREATE UNIQUE INDEX ix_groups_name ON groups (tenant_id, name);

CREATE TABLE group_members (
    group_id   TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    added_at   REAL NOT NULL,
    PRIMARY KEY (group_id, device_id)
) WITHOUT ROWID;
CREATE INDEX ix_group_members_device ON group_members (device_id);

CREATE TABLE definitions (
    tenant_id    TEXT NOT NULL,
    name         TEXT NOT NULL,
    body         TEXT NOT NULL,
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL,
    PRIMARY KEY (tenant_id, name)
) WITHOUT ROWID;

ALTER TABLE requests ADD COLUMN targets TEXT NOT NULL DEFAULT '{}';
ALTER TABLE requests ADD COLUMN schedule TEXT;
ALTER TABLE requests ADD COLUMN rollout TEXT;
ALTER TABLE requests ADD COLUMN rollout_state TEXT;
ALTER TABLE requests ADD COLUMN internal INTEGER NOT NULL DEFAULT 0;

-- The window an execution may be sent in closes at window_end; attempt_base is the attempt
-- count when that window opened (a recurring schedule gives each window its attempts).
ALTER TABLE executions ADD COLUMN window_end REAL;
ALTER TABLE executions ADD COLUMN attempt_base INTEGER NOT NULL DEFAULT 0;

CREATE INDEX ix_devices_gateway ON devices (gateway_id) WHERE gateway_id IS NOT NULL;
