-- Webhook ingress and the inbox appliers.
--
-- payment-api inserts one row per verified vendor event (the unique key on processor and
-- vendor event id makes a redelivery a no-op) and a statement trigger wakes the appliers
-- with NOTIFY. An applier claims due rows with a lease, applies each to its payment in a
-- tenant transaction, and marks it applied or ignored; a row it cannot apply yet (the
-- payment is unknown, or the operation it answers has not been sent) stays pending with a
-- later next_attempt_at; one it must not apply (amount or currency disagree, or the
-- retries ran out) is parked for an operator with the reason in last_error.

ALTER TABLE webhook_inbox
    ADD COLUMN attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN claimed_until   timestamptz,
    ADD COLUMN last_error      text CHECK (length(last_error) <= 1000),
    ADD COLUMN payment_id      text CHECK (length(payment_id) <= 255),
    ADD COLUMN settled_at      timestamptz;

CREATE INDEX webhook_inbox_due ON webhook_inbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_inbox_parked ON webhook_inbox (received_at) WHERE status = 'parked';

CREATE FUNCTION webhook_inbox_wake() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('webhook_inbox', '');
    RETURN NULL;
END $$;

CREATE TRIGGER webhook_inbox_wake AFTER INSERT ON webhook_inbox
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_inbox_wake();

-- Operator switches the running processes read (cached for a second or two). A row's
-- presence turns its switch on: 'webhook_ingestion_paused' makes payment-api answer 503
-- to every webhook, so that vendors retry later (DEPLOYMENT_TOPOLOGY 8).
CREATE TABLE service_switches (
    name   text PRIMARY KEY CHECK (name IN ('webhook_ingestion_paused')),
    reason text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    set_by text NOT NULL CHECK (length(set_by) BETWEEN 1 AND 200),
    set_at timestamptz NOT NULL DEFAULT now()
);

-- Stripe Connect events reach one platform endpoint and are routed by account.
CREATE INDEX vendor_attachments_account ON vendor_attachments (processor, env, account_ref)
    WHERE enabled;
