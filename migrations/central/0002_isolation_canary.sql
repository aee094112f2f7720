-- A schema no tenant role is ever granted: provisioning proves a new tenant's role is
-- denied here, even when the new tenant is the first one and has no neighbour to probe.
CREATE SCHEMA payments_isolation_canary;
REVOKE ALL ON SCHEMA payments_isolation_canary FROM PUBLIC;
CREATE TABLE payments_isolation_canary.payments (payment_id text PRIMARY KEY);
