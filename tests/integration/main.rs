//! Integration tests: real Redis, a real MongoDB-compatible server and the
//! push sandbox, all over sockets (and, where a test says so, real servers
//! this project did not write: s3s-fs, Sockudo, Chromium). One binary (one link) for every feature;
//! `helpers` gives each test its own Redis namespace, Mongo database and
//! sandbox, and removes them when the test ends.
//!
//! Services: HERALD_TEST_REDIS_URL (default redis://127.0.0.1:6379) and
//! HERALD_TEST_MONGODB_URL (default mongodb://127.0.0.1:27017), and for the
//! cluster tests HERALD_TEST_REDIS_CLUSTER_URL (default the Redis Cluster
//! `scripts/redis-cluster.sh` runs on 127.0.0.1:7100-7105). The README's
//! test command starts them.

mod alerting;
mod api;
mod backlog;
mod browser;
mod categories;
mod claims;
mod cli;
mod cluster;
mod dashboard;
mod database_restart;
mod export_helpers;
mod exports;
mod exports_s3;
mod failed_list;
mod failures;
mod grafana_dashboard;
mod helpers;
mod inbox_actions;
mod inbox_browser;
mod legacy_layout;
mod message_expiry;
mod message_pipeline;
mod openapi_fuzz;
mod operator_access;
mod operator_browser;
mod ops;
mod otlp_export;
mod pause;
mod poison_jobs;
mod promql;
mod providers;
mod push_auth;
mod rate_limit;
mod redis_cluster;
mod redis_restart;
mod retention;
mod s3_abort;
mod s3_server;
mod sandbox;
mod scaling;
mod scheduled;
mod servers;
mod sharded;
mod shutdown;
mod sockudo_server;
mod store_batch;
mod supervision;
mod tenancy;
mod trace_context;
mod wakeup;
