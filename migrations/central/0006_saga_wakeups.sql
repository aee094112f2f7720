-- When each tenant's earliest saga timer is due. Timers live in the tenant schemas; this
-- one row per tenant lets the timer loop find the tenants with due work in one query
-- instead of visiting every schema. A tenant transaction that sets a timer lowers its
-- tenant's row (never raises it); the timer loop recomputes it after claiming timers,
-- holding the row lock so that a concurrent lowering is never lost.

CREATE TABLE saga_wakeups (
    tenant_id text PRIMARY KEY CHECK (tenant_id ~ '^tnt_[A-Za-z0-9_]{1,48}$'),
    due_at    timestamptz NOT NULL
);

CREATE INDEX saga_wakeups_due ON saga_wakeups (due_at);

ALTER TABLE saga_wakeups ENABLE ROW LEVEL SECURITY;
CREATE POLICY saga_wakeups_own_tenant ON saga_wakeups
    USING (lower(tenant_id) || '_rw' = current_user)
    WITH CHECK (lower(tenant_id) || '_rw' = current_user);

GRANT SELECT, INSERT, UPDATE ON saga_wakeups TO payments_tenants;
