//! Test harness: real nats-server processes, Exchange and DAG emulators, fault injection.
