-- Small resources kept as JSON documents: files (metadata), software updates, settings,
-- stored commands, LwM2M observations, server secrets. unique_name, when set, is unique
-- per kind and tenant (settings and stored commands are addressed by name too).

CREATE TABLE documents (
    kind         TEXT NOT NULL,
    id           TEXT NOT NULL,
    tenant_id    TEXT NOT NULL,
    name         TEXT NOT NULL,
    unique_name  TEXT,
    body         TEXT NOT NULL,
    created_at   REAL NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;
CREATE INDEX ix_documents_tenant ON documents (kind, tenant_id, created_at);
CREATE INDEX ix_documents_name ON documents (kind, tenant_id, name);
CREATE UNIQUE INDEX ix_documents_unique ON documents (kind, tenant_id, unique_name)
    WHERE unique_name IS NOT NULL;
