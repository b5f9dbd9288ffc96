"""The one identity-service call this homeserver answers itself: which server an e-mail
address belongs on (Tchap's `GET /_matrix/identity/api/v1/info`), from
`identity.domain_map` and `identity.default_server`, so that a client or a peer server
can send a person to their ministry's server before they register there."""
