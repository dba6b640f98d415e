//! `sitewarden-agent`: probes client-access servers and database copies, publishes to NATS.
fn main() {}
