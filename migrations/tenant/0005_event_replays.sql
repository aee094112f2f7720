-- An event re-emitted because a command was repeated with its idempotency key names the
-- event it repeats. Only the originals answer a key: a third repeat re-emits the first
-- answer once, not the first answer and every earlier repeat of it.
ALTER TABLE payment_events ADD COLUMN replay_of text REFERENCES payment_events (event_id);
