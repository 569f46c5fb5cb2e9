-- Failed sign-ins remember the client address, so the limits can count per address:
-- one attacker failing for an email locks out that address, not the email's owner.

ALTER TABLE login_failures ADD COLUMN ip TEXT NOT NULL DEFAULT '';
CREATE INDEX login_failures_ip ON login_failures (ip, at);
