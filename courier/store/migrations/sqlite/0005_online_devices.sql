-- The dispatcher's sweep looks for due work of online devices: from this index when there
-- are fewer online devices than queued executions, from the queue index otherwise.
CREATE INDEX ix_devices_online ON devices (id) WHERE online = 1;
