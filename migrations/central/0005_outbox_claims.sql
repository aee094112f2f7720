-- Outbox claims and hardening.
-- * Relays claim rows (claimed_by / claimed_until) in a short transaction, publish outside
--   any transaction, then mark them; a live claim by another relay holds its bucket.
-- * Tenant roles may insert only events on payment-events whose ce-tenantid is their own,
--   and never claimed or published rows; attributes must be a JSON object.
-- * Event ids are unique per tenant (rejections of unknown senders have no tenant).

ALTER TABLE outbox
    ADD COLUMN claimed_by text,
    ADD COLUMN claimed_until timestamptz,
    ADD CONSTRAINT outbox_attributes_object CHECK (jsonb_typeof(attributes) = 'object');

-- Only claimed, unsent rows: what a relay checks before claiming in a bucket. Without it
-- that check walks the pending index, full of just-published rows not yet vacuumed.
CREATE INDEX outbox_claimed ON outbox (bucket)
    WHERE published_at IS NULL AND claimed_by IS NOT NULL;
-- Room on each page for the two updates a row gets (claimed, then published).
ALTER TABLE outbox SET (fillfactor = 80);

ALTER TABLE outbox DROP CONSTRAINT outbox_event_id_key;
ALTER TABLE outbox ADD CONSTRAINT outbox_tenant_event UNIQUE NULLS NOT DISTINCT (tenant_id, event_id);

DROP POLICY outbox_own_tenant ON outbox;
CREATE POLICY outbox_own_tenant ON outbox FOR INSERT
    WITH CHECK (
        tenant_id IS NOT NULL
        AND lower(tenant_id) || '_rw' = current_user
        AND topic = 'payment-events'
        AND attributes ->> 'ce-tenantid' = tenant_id
        AND claimed_by IS NULL
        AND published_at IS NULL
    );

GRANT SELECT (tenant_id) ON outbox TO payments_tenants;
