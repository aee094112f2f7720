-- A tenant being offboarded leaves soft_deleted (a serving status: refunds and webhooks
-- still write) for offboarding (no tenant transaction may start) before its schema is
-- snapshotted and dropped, so that nothing commits after the snapshot. Like
-- soft_deleted and archived, offboarding requires soft_deleted_at. The trigger that
-- keeps an archived tenant archived is unchanged.

ALTER TABLE tenant_schema_registry
    DROP CONSTRAINT tenant_schema_registry_status_check,
    ADD CONSTRAINT tenant_schema_registry_status_check
        CHECK (status IN ('provisioning', 'active', 'deletion_paused', 'soft_deleted',
                          'offboarding', 'archived')),
    DROP CONSTRAINT tenant_schema_registry_check2,  -- the soft_deleted_at CHECK of 0001
    ADD CONSTRAINT tenant_schema_registry_soft_deleted_at_check
        CHECK (status NOT IN ('soft_deleted', 'offboarding', 'archived')
               OR soft_deleted_at IS NOT NULL);
