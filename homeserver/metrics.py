"""Prometheus metrics, served on a listener of their own (see homeserver.app)."""

from __future__ import annotations

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

REGISTRY = CollectorRegistry(auto_describe=True)
# process_resident_memory_bytes, process_cpu_seconds_total, python_gc_*: the registry is
# our own (tests build several servers in one process), so the defaults are added here.
for _collector in (PROCESS_COLLECTOR, GC_COLLECTOR, PLATFORM_COLLECTOR):
    REGISTRY.register(_collector)

http_requests = Counter(
    "matrix_http_requests",
    "Client-Server API requests by route, method and status",
    ["method", "endpoint", "status"],
    registry=REGISTRY,
)
http_latency = Histogram(
    "matrix_http_request_duration_seconds",
    "Time to answer a request, by route",
    ["method", "endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
sync_longpolls = Gauge(
    "matrix_sync_longpolls_open",
    "/sync requests waiting for something to happen",
    registry=REGISTRY,
)
events_persisted = Counter(
    "matrix_events_persisted", "Room events written to the database", registry=REGISTRY
)
persist_batch_size = Histogram(
    "matrix_event_persist_batch_size",
    "Events written per group commit",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
    registry=REGISTRY,
)
db_pool_connections = Gauge(
    "matrix_db_pool_connections", "Database pool connections", ["state"], registry=REGISTRY
)
push_rule_evaluations = Counter(
    "matrix_push_rule_evaluations",
    "Push rule sets evaluated by the push worker (one per event and local user)",
    registry=REGISTRY,
)
rate_limited = Counter(
    "matrix_rate_limited_requests",
    "Requests refused with M_LIMIT_EXCEEDED",
    ["limit"],
    registry=REGISTRY,
)
federation_refused = Counter(
    "matrix_federation_refused_requests",
    "Federation requests refused because the other server is not on federation.allowed_servers",
    ["direction"],  # inbound | outbound; no server names: they are attacker-chosen labels
    registry=REGISTRY,
)
federation_transactions = Counter(
    "matrix_federation_transactions",
    "Federation transactions by direction (sent | received) and result",
    ["direction", "result"],  # sent: ok | failed | dropped; received: ok | repeat
    registry=REGISTRY,
)
federation_units_sent = Counter(
    "matrix_federation_units_sent",
    "PDUs and EDUs delivered to other servers",
    ["kind"],  # pdu | edu
    registry=REGISTRY,
)
persist_latency = Histogram(
    "matrix_event_persist_duration_seconds",
    "Time to commit one group of events (the transaction, its outbox rows and wake-ups)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
db_pool_waits = Histogram(
    "matrix_db_pool_wait_seconds",
    "Time a request waited for a pooled database connection",
    buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
    registry=REGISTRY,
)
# Destinations are admitted servers (federation.allowed_servers), so the label is bounded
# by the operator's list, not chosen by an attacker.
federation_destination_failures = Counter(
    "matrix_federation_destination_failures",
    "Failed transaction sends, by destination",
    ["destination"],
    registry=REGISTRY,
)
federation_queue_depth = Gauge(
    "matrix_federation_queue_depth",
    "PDUs and stored EDUs waiting to be sent, by destination (read at scrape time)",
    ["destination"],
    registry=REGISTRY,
)
to_device_backlog = Gauge(
    "matrix_to_device_backlog",
    "To-device messages stored and not yet acknowledged by their device (read at scrape time)",
    registry=REGISTRY,
)
process_cache_lookups = Counter(
    "homeserver_process_cache_lookups",
    "Lookups in the per-process caches that other processes invalidate (access-token"
    " sessions, key counts, unread counts), by cache and hit or miss",
    ["cache", "result"],
    registry=REGISTRY,
)
gc_pause = Histogram(
    "python_gc_pause_seconds",
    "How long each garbage collection stopped the process, by generation (homeserver/gc_policy.py)",
    ["generation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
