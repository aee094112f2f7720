-- Outbox claims and hardening.
-- * A relay claims whole buckets (one outbox_claims row per bucket) in a short transaction,
--   publishes their oldest unsent rows outside any transaction, then marks the rows and
--   drops its claims. A live claim by another relay holds the bucket; a dead relay's claims
--   expire. Claiming writes no outbox row: each event is written once, when marked sent.
-- * Tenant roles may insert only events on payment-events whose ce-tenantid is their own,
--   and never published rows; attributes must be a JSON object.
-- * Event ids are unique per tenant (rejections of unknown senders have no tenant).

CREATE TABLE outbox_claims (
    bucket        smallint PRIMARY KEY CHECK (bucket BETWEEN 0 AND 63),
    relay_id      text NOT NULL,
    claimed_until timestamptz NOT NULL
);

ALTER TABLE outbox
    ADD CONSTRAINT outbox_attributes_object CHECK (jsonb_typeof(attributes) = 'object');

ALTER TABLE outbox DROP CONSTRAINT outbox_event_id_key;
ALTER TABLE outbox ADD CONSTRAINT outbox_tenant_event UNIQUE NULLS NOT DISTINCT (tenant_id, event_id);

DROP POLICY outbox_own_tenant ON outbox;
CREATE POLICY outbox_own_tenant ON outbox FOR INSERT
    WITH CHECK (
        tenant_id IS NOT NULL
        AND lower(tenant_id) || '_rw' = current_user
        AND topic = 'payment-events'
        AND attributes ->> 'ce-tenantid' = tenant_id
        AND published_at IS NULL
    );

GRANT SELECT (tenant_id) ON outbox TO payments_tenants;
