-- The transactional outbox: one central table, written inside tenant transactions and
-- drained by the relay. Tenant roles may INSERT rows of their own tenant only (row-level
-- security); of the rows they see (their own), they may read event_id alone, which
-- INSERT ... ON CONFLICT (event_id) DO NOTHING needs. The relay runs as the owner.

CREATE TABLE outbox (
    outbox_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id         text NOT NULL UNIQUE CHECK (length(event_id) BETWEEN 1 AND 255),
    tenant_id        text CHECK (tenant_id ~ '^tnt_[A-Za-z0-9_]{1,48}$'),
    topic            text NOT NULL CHECK (topic ~ '^[a-z][a-z0-9-]{2,200}$'),
    ordering_key     text NOT NULL DEFAULT '' CHECK (length(ordering_key) <= 1024),
    bucket           smallint GENERATED ALWAYS AS (abs(hashtext(ordering_key) % 64)) STORED,
    attributes       jsonb NOT NULL,
    data             bytea NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at     timestamptz,
    publish_attempts integer NOT NULL DEFAULT 0,
    last_error       text,
    replays          integer NOT NULL DEFAULT 0
);

CREATE INDEX outbox_pending ON outbox (bucket, outbox_id) WHERE published_at IS NULL;
CREATE INDEX outbox_published ON outbox (published_at) WHERE published_at IS NOT NULL;
CREATE INDEX outbox_tenant_created ON outbox (tenant_id, created_at);

ALTER TABLE outbox ENABLE ROW LEVEL SECURITY;
CREATE POLICY outbox_own_tenant ON outbox FOR INSERT
    WITH CHECK (tenant_id IS NOT NULL AND lower(tenant_id) || '_rw' = current_user);
CREATE POLICY outbox_own_rows ON outbox FOR SELECT
    USING (lower(tenant_id) || '_rw' = current_user);

-- Wake relays once per inserting statement; the notification is delivered at commit.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('payments_outbox', '');
    RETURN NULL;
END $$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- Relays announce themselves so that each takes a fair share of the 64 buckets.
CREATE TABLE outbox_relays (
    relay_id     text PRIMARY KEY,
    heartbeat_at timestamptz NOT NULL
);

-- Every tenant role is a member of payments_tenants, which holds the central privileges
-- once: one ACL entry instead of one per tenant, and no concurrent GRANTs on one object.
-- Roles are cluster-wide, so another database on the server may have created it already.
-- (A concurrent creator elsewhere makes this one wait, then fail with unique_violation.)
DO $$
BEGIN
    CREATE ROLE payments_tenants NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END $$;
GRANT USAGE ON SCHEMA payments_central TO payments_tenants;
GRANT INSERT, SELECT (event_id) ON outbox TO payments_tenants;

DO $$
DECLARE
    tenant_role text;
BEGIN
    FOR tenant_role IN SELECT role_name FROM tenant_schema_registry WHERE status <> 'archived'
    LOOP
        EXECUTE format('ALTER ROLE %I INHERIT', tenant_role);
        EXECUTE format('GRANT payments_tenants TO %I', tenant_role);
    END LOOP;
END $$;
