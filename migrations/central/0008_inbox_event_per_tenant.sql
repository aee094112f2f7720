-- One vendor event may reach two tenants (one connected account delivering to both
-- endpoints, or an account re-attached to a new tenant): each tenant keeps its own row,
-- so neither loses the event to the other. A redelivery to the same tenant still stores
-- nothing. Offboarded rows (tenant_id NULL) never block anything.

ALTER TABLE webhook_inbox DROP CONSTRAINT webhook_inbox_processor_vendor_event_id_key;
ALTER TABLE webhook_inbox
    ADD CONSTRAINT webhook_inbox_event_per_tenant UNIQUE (processor, vendor_event_id, tenant_id);
