-- Addresses a user bound at an identity server through this server (/account/3pid/bind):
-- where to ask for the unbind when the address is removed or the account closed.
CREATE TABLE id_server_bindings (
    user_id TEXT NOT NULL,
    medium TEXT NOT NULL,
    address TEXT NOT NULL,
    id_server TEXT NOT NULL,
    PRIMARY KEY (user_id, medium, address, id_server)
);
