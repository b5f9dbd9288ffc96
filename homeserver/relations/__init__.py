"""Relations between events (spec: "Forming relationships between events", threads,
edits, references): GET /v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]],
GET /v1/rooms/{roomId}/threads, and the bundled aggregations (`unsigned["m.relations"]`)
that every endpoint serving events adds through `RelationsService.bundle`.

Data flow: EventStore indexes each event's m.relates_to into `event_relations` (and a
thread's latest activity into `threads`) in the transaction that stores it, for local,
federated and backfilled events; a redaction deletes its target's row. Everything here
reads those rows (storage/relations.py), never event content.
"""
