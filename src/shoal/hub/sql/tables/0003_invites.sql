-- Invites: a device login made by `shoal hub add-device` starts with a one-time password that
-- expires (the role's VALID UNTIL); on joining, the device replaces it with a SCRAM verifier of
-- its own password (shoal.claim_invite), so the invite is worthless afterwards.
ALTER TABLE shoal.device_roles ADD COLUMN invite_expires timestamptz;
ALTER TABLE shoal.device_roles ADD COLUMN claimed_at timestamptz;
