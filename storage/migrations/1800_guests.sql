-- Guest accounts (spec: "Guest access"): registered with kind=guest, no password.
ALTER TABLE users ADD COLUMN is_guest boolean NOT NULL DEFAULT false;
