-- The tenant registry, per-tenant migration history, vendor attachments, the webhook
-- inbox, and the isolation canary that provisioning probes. Runs with
-- search_path = payments_central.

REVOKE ALL ON SCHEMA payments_central FROM PUBLIC;

CREATE TABLE tenant_schema_registry (
    tenant_id              text PRIMARY KEY
                           CHECK (tenant_id ~ '^tnt_[A-Za-z0-9_]{1,48}$'),
    schema_name            text NOT NULL UNIQUE
                           CHECK (schema_name = lower(tenant_id)),
    role_name              text NOT NULL UNIQUE
                           CHECK (role_name = schema_name || '_rw'),
    pci_profile            text NOT NULL CHECK (pci_profile IN ('saq_a')),
    cmek_key_uri           text
                           CHECK (cmek_key_uri ~ '^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$'),
    status                 text NOT NULL DEFAULT 'provisioning'
                           CHECK (status IN ('provisioning', 'active', 'deletion_paused',
                                             'soft_deleted', 'archived')),
    applied_versions       integer[] NOT NULL DEFAULT '{}',
    payments_ready         boolean NOT NULL DEFAULT false,
    migration_error        text,
    deletion_requested_at  timestamptz,
    deletion_paused_reason text,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    soft_deleted_at        timestamptz,
    archived_at            timestamptz,
    archive_uri            text,
    CHECK (status NOT IN ('soft_deleted', 'archived') OR soft_deleted_at IS NOT NULL),
    CHECK (status <> 'archived' OR (archived_at IS NOT NULL AND archive_uri IS NOT NULL)),
    CHECK (status <> 'deletion_paused' OR deletion_paused_reason IS NOT NULL)
);

-- An archived tenant never comes back: its schema and role are gone.
CREATE FUNCTION tenant_registry_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'archived' AND NEW.status <> 'archived' THEN
        RAISE EXCEPTION 'tenant % is archived and cannot become %', OLD.tenant_id, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END $$;

CREATE TRIGGER tenant_registry_guard BEFORE UPDATE ON tenant_schema_registry
    FOR EACH ROW EXECUTE FUNCTION tenant_registry_guard();

CREATE TABLE tenant_migrations (
    tenant_id  text NOT NULL REFERENCES tenant_schema_registry (tenant_id),
    version    integer NOT NULL CHECK (version > 0),
    name       text NOT NULL,
    checksum   text NOT NULL CHECK (checksum ~ '^[0-9a-f]{64}$'),
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, version)
);

CREATE TABLE vendor_attachments (
    tenant_id             text NOT NULL REFERENCES tenant_schema_registry (tenant_id),
    processor             text NOT NULL CHECK (processor IN ('stripe', 'paypal', 'hesabpay')),
    env                   text NOT NULL CHECK (env IN ('sandbox', 'production')),
    account_ref           text NOT NULL CHECK (length(account_ref) BETWEEN 1 AND 255),
    api_key_ref           text NOT NULL,
    webhook_secret_ref    text,
    precedence            integer NOT NULL CHECK (precedence BETWEEN 1 AND 10000),
    enabled               boolean NOT NULL DEFAULT true,
    secrets_destroy_after timestamptz,
    secrets_destroyed_at  timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, processor, env)
);

-- Routing picks the lowest precedence: two enabled vendors may not tie.
CREATE UNIQUE INDEX vendor_attachments_precedence
    ON vendor_attachments (tenant_id, env, precedence) WHERE enabled;

-- Verified vendor notifications, one row per vendor event. tenant_id becomes NULL when
-- the tenant is offboarded; such rows are kept until retain_until for fraud forensics.
CREATE TABLE webhook_inbox (
    inbox_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    processor       text NOT NULL CHECK (processor IN ('stripe', 'paypal', 'hesabpay')),
    vendor_event_id text NOT NULL CHECK (length(vendor_event_id) BETWEEN 1 AND 255),
    tenant_id       text REFERENCES tenant_schema_registry (tenant_id),
    event_type      text NOT NULL,
    payload         jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'applied', 'parked', 'ignored')),
    received_at     timestamptz NOT NULL DEFAULT now(),
    anonymized_at   timestamptz,
    retain_until    timestamptz,
    UNIQUE (processor, vendor_event_id),
    CHECK ((tenant_id IS NULL) = (anonymized_at IS NOT NULL))
);

CREATE INDEX webhook_inbox_tenant ON webhook_inbox (tenant_id) WHERE tenant_id IS NOT NULL;
