//! sitewarden's integration tests, one test binary: each module is a former test file and
//! tells the stories of one part against real components (nats-server, HAProxy, BIND, moto,
//! Chromium, the built binaries) started by the `sitewarden-tests` harness. Module paths name
//! the part: `cargo test -p sitewarden-tests --test integration -- fault_suite::` runs the fault
//! suite alone (docs/testing.md).
//!
//! One binary links once instead of 25 times. Its tests run two at a time in threads of one
//! process, so they share no process-wide state (no `set_var`, no global subscriber), and the
//! stories that load the whole machine take turns through `sitewarden_tests::machine`.

mod agent_bus;
mod agent_cli;
mod agent_probes;
mod builtin_dns;
mod bus_flood;
mod cli;
mod cloudflare_provider;
mod controller_e2e;
mod controller_ha;
mod dashboard;
mod demo;
mod dns_tcp_hostile;
mod edge_haproxy;
mod edge_webhook;
mod fault_suite;
mod grafana;
mod http_hostile;
mod lease;
mod metrics_promtool;
mod nats_auth;
mod nats_auth_methods;
mod notify;
mod operator_api;
mod propagation;
mod rfc2136_bind;
mod route53_moto;
mod zone_command;
