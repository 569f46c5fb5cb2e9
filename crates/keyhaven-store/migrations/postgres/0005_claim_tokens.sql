-- Claims carry a token: only the holder of the current claim may renew or finish a
-- notice or a delivery, so a node whose lease lapsed can neither send again nor
-- overwrite the outcome recorded by the node that took over.

ALTER TABLE expiry_notices ADD COLUMN claim_token TEXT;
ALTER TABLE webhook_deliveries ADD COLUMN claim_token TEXT;

-- In-flight deliveries per endpoint (the claim caps them).
CREATE INDEX webhook_deliveries_inflight ON webhook_deliveries (endpoint_id, status, claimed_until);
