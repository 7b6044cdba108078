-- Named queries for the SQLite backend. Each block starts with "-- name: <name>".
-- Column lists for executions come from courier/store/sqlite_rows.py ({exec_columns}).

-- name: insert_tenant
INSERT OR IGNORE INTO tenants (id, created_at) VALUES (?, ?);

-- name: tenant_exists
SELECT 1 FROM tenants WHERE id = ?;

-- name: put_api_key
INSERT OR REPLACE INTO api_keys
    (id, tenant_id, secret_hash, scopes, name, created_at, expires_at, revoked_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?);

-- name: get_api_key
SELECT id, tenant_id, secret_hash, scopes, name, created_at, expires_at, revoked_at
FROM api_keys WHERE id = ?;

-- name: list_api_keys
SELECT id, tenant_id, secret_hash, scopes, name, created_at, expires_at, revoked_at
FROM api_keys WHERE tenant_id = ? ORDER BY created_at;

-- name: put_device
INSERT OR REPLACE INTO devices
    (id, tenant_id, kind, gateway_id, protocol, labels, timezone, delivery_policy,
     password_hash, online, last_seen, created_at, updated_at, authorization_ids, payload_key)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: get_device
SELECT {device_columns} FROM devices WHERE id = ?;

-- name: delete_device
DELETE FROM devices WHERE id = ?;

-- name: find_idempotent
SELECT id, created_at FROM requests WHERE tenant_id = ? AND idempotency_key = ?;

-- name: forget_idempotency
UPDATE requests SET idempotency_key = NULL WHERE tenant_id = ? AND idempotency_key = ?;

-- name: insert_request
INSERT INTO requests ({request_columns}) VALUES ({request_marks});

-- name: set_rollout_state
UPDATE requests SET rollout_state = ? WHERE id = ?;

-- name: get_request
SELECT {request_columns} FROM requests WHERE id = ?;

-- name: request_args
SELECT args, created_at FROM requests WHERE id = ?;

-- name: request_state_counts
SELECT state, count(*) FROM executions WHERE request_id = ? GROUP BY state;

-- name: insert_execution
INSERT INTO executions ({exec_insert_columns}) VALUES ({exec_insert_marks});

-- name: get_execution
SELECT {exec_columns} FROM executions WHERE id = ?;

-- name: executions_of_request
SELECT {exec_columns} FROM executions WHERE request_id = ? ORDER BY seq;

-- name: pending_of_device
SELECT {exec_columns} FROM executions
WHERE device_id = ? AND state IN ({pending_states}) ORDER BY seq;

-- name: pending_of_request
SELECT {exec_columns} FROM executions
WHERE request_id = ? AND state IN ({pending_states}) ORDER BY seq;

-- name: pending_of_one
SELECT device_id, state, count(*) FROM executions
WHERE device_id = ? AND state IN ({pending_states}) GROUP BY state;

-- name: queued_routes
SELECT DISTINCT route_id FROM executions WHERE state = 'QUEUED' LIMIT ?;

-- name: in_flight
SELECT state, count(*) FROM executions
WHERE route_id = ? AND state IN ('SENT', 'ACKNOWLEDGED', 'IN_PROGRESS') GROUP BY state;

-- name: queued
-- An attached device's executions travel through its gateway (the route) and wait for the
-- attached device to be online too.
SELECT {exec_columns} FROM executions
WHERE route_id = ? AND state = 'QUEUED' AND not_before <= ? AND expires_at > ?
  AND (window_end IS NULL OR window_end > ?)
  AND (device_id = route_id OR device_id IN (SELECT id FROM devices WHERE online = 1))
ORDER BY priority DESC, seq LIMIT ?;

-- name: attached_to
SELECT id FROM devices WHERE gateway_id = ? ORDER BY id;

-- name: has_due_ahead
SELECT 1 FROM executions
WHERE route_id = ? AND state = 'QUEUED' AND not_before <= ? AND expires_at > ? AND priority >= ?
  AND (window_end IS NULL OR window_end > ?)
LIMIT 1;

-- name: routes_with_due
SELECT DISTINCT e.route_id FROM executions AS e JOIN devices AS d ON d.id = e.route_id
WHERE e.state = 'QUEUED' AND e.not_before <= ? AND e.expires_at > ? AND d.online = 1
  AND (e.window_end IS NULL OR e.window_end > ?)
LIMIT ?;

-- name: online_routes_with_due
SELECT d.id FROM devices AS d
WHERE d.online = 1 AND EXISTS (
    SELECT 1 FROM executions AS e
    WHERE e.route_id = d.id AND e.state = 'QUEUED' AND e.not_before <= ? AND e.expires_at > ?
      AND (e.window_end IS NULL OR e.window_end > ?))
LIMIT ?;

-- name: sweep_sizes
SELECT (SELECT count(*) FROM devices WHERE online = 1),
       (SELECT count(*) FROM executions WHERE state = 'QUEUED');

-- name: due_timers
SELECT {exec_columns} FROM executions
WHERE wake_at IS NOT NULL AND wake_at <= ? ORDER BY wake_at LIMIT ?;

-- name: next_wake
SELECT min(wake_at) FROM executions WHERE wake_at IS NOT NULL;

-- name: count_queued
SELECT count(*) FROM executions WHERE state = 'QUEUED';

-- name: count_in_flight
SELECT state, count(*) FROM executions
WHERE state IN ('SENT', 'ACKNOWLEDGED', 'IN_PROGRESS') GROUP BY state;

-- name: count_scheduled
SELECT count(*) FROM executions WHERE state = 'SCHEDULED';

-- name: insert_event
INSERT INTO events
    (execution_id, tenant_id, at, kind, from_state, to_state, actor, attempt, reason, data, seq)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: history
SELECT execution_id, tenant_id, at, kind, from_state, to_state, actor, attempt, reason, data
FROM events WHERE execution_id = ? ORDER BY seq;

-- name: get_tenant
SELECT id, timezone FROM tenants WHERE id = ?;

-- name: set_tenant_timezone
UPDATE tenants SET timezone = ? WHERE id = ?;

-- name: get_group
SELECT g.id, g.tenant_id, g.name, g.created_at, g.updated_at,
       (SELECT count(*) FROM group_members AS m WHERE m.group_id = g.id)
FROM groups AS g WHERE g.id = ?;

-- name: get_group_by_name
SELECT id FROM groups WHERE tenant_id = ? AND name = ?;

-- name: list_groups
SELECT g.id, g.tenant_id, g.name, g.created_at, g.updated_at,
       (SELECT count(*) FROM group_members AS m WHERE m.group_id = g.id)
FROM groups AS g WHERE g.tenant_id = ? ORDER BY g.name LIMIT ? OFFSET ?;

-- name: count_groups
SELECT count(*) FROM groups WHERE tenant_id = ?;

-- name: put_group
INSERT OR REPLACE INTO groups (id, tenant_id, name, created_at, updated_at) VALUES (?, ?, ?, ?, ?);

-- name: delete_group
DELETE FROM groups WHERE id = ?;

-- name: delete_group_members
DELETE FROM group_members WHERE group_id = ?;

-- name: add_member
INSERT OR IGNORE INTO group_members (group_id, device_id, added_at) VALUES (?, ?, ?);

-- name: remove_member
DELETE FROM group_members WHERE group_id = ? AND device_id = ?;

-- name: remove_device_memberships
DELETE FROM group_members WHERE device_id = ?;

-- name: group_members
SELECT {device_columns} FROM devices
WHERE id IN (SELECT device_id FROM group_members WHERE group_id = ?)
ORDER BY id LIMIT ? OFFSET ?;

-- name: count_group_members
SELECT count(*) FROM group_members WHERE group_id = ?;

-- name: get_definition
SELECT body FROM definitions WHERE tenant_id = ? AND name = ?;

-- name: list_definitions
SELECT body FROM definitions WHERE tenant_id = ? ORDER BY name;

-- name: put_definition
INSERT OR REPLACE INTO definitions (tenant_id, name, body, created_at, updated_at)
VALUES (?, ?, ?, coalesce((SELECT created_at FROM definitions WHERE tenant_id = ? AND name = ?), ?), ?);

-- name: delete_definition
DELETE FROM definitions WHERE tenant_id = ? AND name = ?;
