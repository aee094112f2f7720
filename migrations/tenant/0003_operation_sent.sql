-- Whether a request for the operation may ever have reached the processor. Once it may
-- have, the operation never fails over to another processor and is never settled as
-- failed without the vendor's word: running out of retries makes it in doubt instead.
ALTER TABLE payment_operations ADD COLUMN sent boolean NOT NULL DEFAULT false;
