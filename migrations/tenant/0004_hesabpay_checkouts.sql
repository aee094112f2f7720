-- What the HesabPay adapter remembers, since HesabPay offers no lookup: one row per hosted
-- checkout (the whole session as jsonb, written back after each pure state change) and one
-- row per verified webhook signature. Runs with search_path = the tenant's schema.

CREATE TABLE hesabpay_checkouts (
    session_id      text PRIMARY KEY CHECK (length(session_id) BETWEEN 1 AND 255),
    idempotency_key text NOT NULL UNIQUE CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    payment_id      text NOT NULL,
    status          text NOT NULL
                    CHECK (status IN ('creating', 'open', 'refused', 'paid', 'failed', 'abandoned')),
    -- The UTC days of the session's successful payments, for the daily transaction list.
    payment_days    date[] NOT NULL DEFAULT '{}',
    state           jsonb NOT NULL CHECK (jsonb_typeof(state) = 'object'),
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);

CREATE INDEX hesabpay_checkouts_payment ON hesabpay_checkouts (payment_id);
CREATE INDEX hesabpay_checkouts_payment_days ON hesabpay_checkouts USING gin (payment_days);

-- Signatures of verified webhooks (HesabPay's signature does not cover the body), kept
-- for the replay retention and then deleted.
CREATE TABLE hesabpay_webhook_sightings (
    signature      text PRIMARY KEY CHECK (length(signature) BETWEEN 1 AND 255),
    transaction_id text NOT NULL,
    signed_at      timestamptz NOT NULL,
    seen_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX hesabpay_webhook_sightings_signed_at ON hesabpay_webhook_sightings (signed_at);
