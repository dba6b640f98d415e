//! An agent or a controller running inside the test process: started from TOML text through
//! the component's own config loaders (so a test config is checked exactly as a deployed one),
//! cancelled on drop. Tests that start one use tokio's multi-thread runtime, as the binaries do.

use std::sync::Arc;
use std::time::Duration;

use sitewarden_agent::AgentConfig;
use sitewarden_controller::config::ControllerConfig;
use sitewarden_controller::provider::DnsProvider;
use sitewarden_controller::runtime::metrics::Metrics;
use sitewarden_controller::runtime::settings::RuntimeSettings;
use sitewarden_controller::runtime::{self, Runtime};
use sitewarden_shared::config::Source;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// An agent running inside the test process; cancelled when dropped.
pub struct RunningAgent {
    /// Cancels the agent.
    pub shutdown: CancellationToken,
    /// The agent's task: `sitewarden_agent::run::run`.
    pub handle: JoinHandle<anyhow::Result<()>>,
}

impl RunningAgent {
    /// Loads `toml` and runs the agent until dropped or stopped; panics naming the error and
    /// the text when the config does not load.
    pub fn start(toml: &str) -> Self {
        let config = AgentConfig::from_source(&Source::inline("test-agent.toml", toml))
            .unwrap_or_else(|e| panic!("test config is invalid: {e}\n{toml}"));
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(sitewarden_agent::run::run(config, shutdown.clone()));
        Self { shutdown, handle }
    }

    /// Stops the agent and waits (10 s at most) for it to flush.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.handle).await;
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A controller running inside the test process (`runtime::run`), loaded from TOML text
/// through the controller's own loaders, with the DNS provider the test hands it; cancelled
/// when dropped.
pub struct RunningController {
    /// Its metrics (acting, epoch, intake counters), read directly.
    pub metrics: Arc<Metrics>,
    /// Cancels the controller.
    pub shutdown: CancellationToken,
    /// The controller's task.
    pub handle: JoinHandle<anyhow::Result<()>>,
}

impl RunningController {
    /// Loads `toml` and runs the controller with `provider` (`None`: the one its
    /// `[provider]` table names) until dropped or stopped; panics naming the error and the
    /// text when the config does not load.
    pub fn start(toml: &str, provider: Option<Arc<dyn DnsProvider>>) -> Self {
        let src = Source::inline("controller.toml", toml);
        let config = ControllerConfig::load(&src)
            .unwrap_or_else(|e| panic!("test config is invalid: {e}\n{toml}"));
        let settings = RuntimeSettings::load(&src)
            .unwrap_or_else(|e| panic!("test config is invalid: {e}\n{toml}"));
        let metrics = Arc::new(Metrics::new());
        let shutdown = CancellationToken::new();
        let rt = Runtime {
            config,
            settings,
            provider,
            metrics: metrics.clone(),
        };
        let handle = tokio::spawn(runtime::run(rt, shutdown.clone()));
        Self {
            metrics,
            shutdown,
            handle,
        }
    }

    /// Stops the controller and waits (10 s at most) for it to step down and exit.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.handle).await;
    }
}

impl Drop for RunningController {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
