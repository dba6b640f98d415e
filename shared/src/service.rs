//! What a daemon tells its supervisor and its journal: log lines (text, or JSON with
//! `SITEWARDEN_LOG_FORMAT=json`, always escaped and never coloured — journald stores colour
//! codes as blobs) and systemd readiness (`READY=1` once the bus answers; units use
//! `Type=notify`, so `systemctl start` returns when the daemon can work, not when it forked).

use std::time::Duration;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event (the default).
    Text,
    /// One JSON object per event, for log shippers.
    Json,
}

impl LogFormat {
    /// From `SITEWARDEN_LOG_FORMAT` (`text` or `json`); anything else is text, said once on
    /// stderr.
    pub fn from_env() -> Self {
        match std::env::var("SITEWARDEN_LOG_FORMAT").as_deref() {
            Ok("json") => LogFormat::Json,
            Ok("text") | Err(_) => LogFormat::Text,
            Ok(other) => {
                eprintln!(
                    "warning: SITEWARDEN_LOG_FORMAT={:?} is not text or json; writing text",
                    crate::terminal::line(other)
                );
                LogFormat::Text
            }
        }
    }
}

/// Installs the process's log subscriber: `RUST_LOG` filters (default `info`), lines go to
/// stderr through [`crate::terminal::LogWriter`] (control characters and bidi overrides from
/// the network escaped), without colour codes.
pub fn init_logging(format: LogFormat) {
    init_logging_at(format, "info");
}

/// As [`init_logging`], with `default` as the filter when `RUST_LOG` is unset: one-shot
/// commands log `warn` and up, so their own output is not buried in connection chatter.
pub fn init_logging_at(format: LogFormat, default: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(|| crate::terminal::LogWriter(std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Tells systemd the service is ready (a no-op outside systemd's `Type=notify`).
pub fn notify_ready() {
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!("could not tell systemd the service is ready: {e}");
    }
}

/// Waits until `client` is connected (polling its state), then tells systemd the service is
/// ready; gives up quietly at `stop`. For a client that keeps retrying its first connection.
pub async fn ready_when_connected(
    client: async_nats::Client,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        if client.connection_state() == async_nats::connection::State::Connected {
            notify_ready();
            return;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}
