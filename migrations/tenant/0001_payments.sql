-- A tenant's payments. Runs with search_path = the tenant's schema; names are unqualified.
-- Amounts are integer minor units of one ISO 4217 currency.
CREATE TABLE payments (
    payment_id       text PRIMARY KEY CHECK (length(payment_id) BETWEEN 1 AND 128),
    state            text NOT NULL
                     CHECK (state IN ('requested', 'authorizing', 'requires_action',
                                      'authorized', 'capturing', 'captured',
                                      'partially_captured', 'voiding', 'voided',
                                      'refunding', 'partially_refunded', 'refunded',
                                      'failed', 'expired', 'in_doubt',
                                      'compensation_failed')),
    currency         text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    amount_minor     bigint NOT NULL CHECK (amount_minor > 0),
    authorized_minor bigint NOT NULL DEFAULT 0,
    captured_minor   bigint NOT NULL DEFAULT 0,
    refunded_minor   bigint NOT NULL DEFAULT 0,
    processor        text CHECK (processor IN ('stripe', 'paypal', 'hesabpay')),
    version          integer NOT NULL DEFAULT 1 CHECK (version > 0),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (authorized_minor BETWEEN 0 AND amount_minor),
    CHECK (captured_minor BETWEEN 0 AND authorized_minor),
    CHECK (refunded_minor BETWEEN 0 AND captured_minor)
);

CREATE INDEX payments_state ON payments (state);
