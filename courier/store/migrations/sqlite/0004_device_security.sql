-- Secure deferred payloads: each device's authorization ids (Servitly's
-- USER_AUTHORIZATION_IDS) and the AES-256 key its payloads are encrypted with (Base64).
ALTER TABLE devices ADD COLUMN authorization_ids TEXT NOT NULL DEFAULT '[]';
ALTER TABLE devices ADD COLUMN payload_key TEXT;
