-- Saga persistence: the payment's saga state, one row per vendor operation, saga timers,
-- command idempotency keys, the inbox of processed messages, and each payment's timeline
-- (transitions and events) for operators. Runs with search_path = the tenant's schema.

ALTER TABLE payments
    ADD COLUMN capture_mode text NOT NULL DEFAULT 'manual'
        CHECK (capture_mode IN ('manual', 'automatic')),
    ADD COLUMN processor_reference text CHECK (length(processor_reference) <= 255),
    ADD COLUMN authorization_expires_at timestamptz,
    ADD COLUMN attention text CHECK (length(attention) <= 1000),
    ADD COLUMN saga jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(saga) = 'object');

CREATE INDEX payments_attention ON payments (updated_at) WHERE attention IS NOT NULL;

-- The last line of defence for money: whatever the code does, an update may not leave a
-- terminal state, lower an amount, change the currency or amount asked for, or skip a
-- version (optimistic concurrency: writers update WHERE version = the version they read).
CREATE FUNCTION payments_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.state IN ('voided', 'refunded', 'failed', 'expired') AND NEW.state <> OLD.state THEN
        RAISE EXCEPTION 'payment % is %: a terminal state is never left', OLD.payment_id, OLD.state
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.authorized_minor < OLD.authorized_minor
       OR NEW.captured_minor < OLD.captured_minor
       OR NEW.refunded_minor < OLD.refunded_minor THEN
        RAISE EXCEPTION 'payment %: amounts only grow', OLD.payment_id
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.currency <> OLD.currency OR NEW.amount_minor <> OLD.amount_minor
       OR NEW.processor IS DISTINCT FROM COALESCE(OLD.processor, NEW.processor) THEN
        RAISE EXCEPTION 'payment %: currency, amount and processor are fixed', OLD.payment_id
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.version <> OLD.version + 1 THEN
        RAISE EXCEPTION 'payment %: version % does not follow %', OLD.payment_id, NEW.version, OLD.version
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER payments_guard BEFORE UPDATE ON payments
    FOR EACH ROW EXECUTE FUNCTION payments_guard();

CREATE TABLE payment_operations (
    payment_id       text NOT NULL REFERENCES payments (payment_id),
    seq              integer NOT NULL CHECK (seq > 0),
    kind             text NOT NULL CHECK (kind IN ('authorize', 'capture', 'void', 'refund')),
    processor        text NOT NULL CHECK (processor IN ('stripe', 'paypal', 'hesabpay')),
    amount_minor     bigint NOT NULL CHECK (amount_minor >= 0),
    idempotency_key  text NOT NULL UNIQUE CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    status           text NOT NULL
                     CHECK (status IN ('pending', 'action_required', 'in_doubt',
                                       'succeeded', 'failed')),
    origin           text NOT NULL CHECK (origin IN ('command', 'auto_capture', 'cancel', 'expiry')),
    command_key      text,
    final            boolean NOT NULL DEFAULT true,
    reason           text,
    vendor_reference text CHECK (length(vendor_reference) <= 255),
    target_reference text CHECK (length(target_reference) <= 255),
    failure_code     text,
    inquiries        integer NOT NULL DEFAULT 0 CHECK (inquiries >= 0),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error       text CHECK (length(last_error) <= 1000),
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    PRIMARY KEY (payment_id, seq)
);

CREATE INDEX payment_operations_open ON payment_operations (status)
    WHERE status IN ('pending', 'action_required', 'in_doubt');
CREATE INDEX payment_operations_vendor_reference
    ON payment_operations (processor, vendor_reference) WHERE vendor_reference IS NOT NULL;

-- An operation's final outcome is written once.
CREATE FUNCTION payment_operations_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status IN ('succeeded', 'failed')
       AND (NEW.status <> OLD.status
            OR NEW.amount_minor <> OLD.amount_minor
            OR NEW.vendor_reference IS DISTINCT FROM OLD.vendor_reference) THEN
        RAISE EXCEPTION 'operation %/% is %: a final outcome is never changed',
            OLD.payment_id, OLD.seq, OLD.status USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.idempotency_key <> OLD.idempotency_key OR NEW.kind <> OLD.kind
       OR NEW.processor <> OLD.processor THEN
        RAISE EXCEPTION 'operation %/%: key, kind and processor are fixed', OLD.payment_id, OLD.seq
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER payment_operations_guard BEFORE UPDATE ON payment_operations
    FOR EACH ROW EXECUTE FUNCTION payment_operations_guard();

CREATE TABLE saga_timers (
    payment_id  text NOT NULL REFERENCES payments (payment_id),
    kind        text NOT NULL
                CHECK (kind IN ('redrive', 'inquiry', 'action_timeout', 'authorization_expiry')),
    seq         integer NOT NULL DEFAULT 0 CHECK (seq >= 0),
    due_at      timestamptz NOT NULL,
    lease_until timestamptz,
    PRIMARY KEY (payment_id, kind, seq)
);

CREATE INDEX saga_timers_due ON saga_timers (due_at);

-- Command idempotency: one row per idempotency key the booking service used, with a hash
-- of the command it came with. Dropped by gc-idempotency after expires_at, and only once
-- the payment is at rest.
CREATE TABLE idempotency_keys (
    idempotency_key text PRIMARY KEY CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    payment_id      text NOT NULL,
    command_type    text NOT NULL,
    request_hash    text NOT NULL CHECK (request_hash ~ '^[0-9a-f]{64}$'),
    message_id      text NOT NULL,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    CHECK (expires_at > created_at)
);

CREATE INDEX idempotency_keys_expires ON idempotency_keys (expires_at);

-- Messages already applied (ce-source and ce-id): a redelivery finds its row and does nothing.
CREATE TABLE processed_messages (
    message_id   text PRIMARY KEY CHECK (length(message_id) BETWEEN 1 AND 600),
    payment_id   text,
    processed_at timestamptz NOT NULL
);

CREATE INDEX processed_messages_processed_at ON processed_messages (processed_at);

-- The timeline: every version of every payment, and every event it emitted.
CREATE TABLE payment_transitions (
    payment_id text NOT NULL REFERENCES payments (payment_id),
    version    integer NOT NULL CHECK (version > 0),
    from_state text,
    to_state   text NOT NULL,
    cause      text NOT NULL CHECK (length(cause) <= 100),
    message_id text,
    detail     text CHECK (length(detail) <= 1000),
    at         timestamptz NOT NULL,
    PRIMARY KEY (payment_id, version)
);

CREATE TABLE payment_events (
    event_id    text PRIMARY KEY,
    payment_id  text NOT NULL REFERENCES payments (payment_id),
    version     integer NOT NULL,
    type        text NOT NULL,
    command_key text,
    data        jsonb NOT NULL,
    created_at  timestamptz NOT NULL
);

CREATE INDEX payment_events_payment ON payment_events (payment_id, version);
CREATE INDEX payment_events_command ON payment_events (command_key) WHERE command_key IS NOT NULL;

-- The tenant's saga settings (one row).
CREATE TABLE saga_policy (
    singleton            boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    authorization_expiry text NOT NULL DEFAULT 'auto_void'
                         CHECK (authorization_expiry IN ('auto_void', 'expire')),
    action_timeout       interval NOT NULL DEFAULT '1 hour'
                         CHECK (action_timeout BETWEEN '1 minute' AND '7 days')
);

INSERT INTO saga_policy DEFAULT VALUES;
