//! "Subscribe live, replay after every (re)connect", written once for every reader of a stream
//! the controller must not miss a message of (agent events in [`super::intake`], overrides in
//! [`super::overrides`]).
//!
//! Live messages come from a core NATS subscription. It follows the client through reconnects
//! to any surviving node at once, and it has no server-side state to lose with a node (an
//! ephemeral JetStream consumer lives on one node). The JetStream stream serves replays only:
//! at start, everything it retains; after every reconnect, what the [`CatchUp`] policy says, so
//! the gap is filled. Live messages are held back while the replay runs and released after it,
//! in order, so replayed history comes first. While the replay is still being opened they are
//! held for at most [`OPEN_HOLD`]: a stream whose node just died may take the whole deadline to
//! answer, and the engine must not go without live events meanwhile. A replayed message older than one the reader already took live is its
//! to skip (the engine refuses out-of-order events anyway).
//! A replay is bounded by [`REPLAY_DEADLINE`]: one that overruns is abandoned and live messages
//! flow again. One that fails (the stream has no leader yet, a node died mid-replay) is retried
//! at the next reconnect poll, up to [`MAX_ATTEMPTS`] times in a row, then again after the next
//! reconnect. The reader skips what it has
//! already seen, by sequence number or id, because a replay overlaps what arrived live.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::{Message, Statistics, Subscriber};
use futures::StreamExt;
use futures::stream::{BoxStream, SelectAll};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

/// How long one replay may take before the reader goes on with live messages alone (a replay
/// normally takes milliseconds).
pub const REPLAY_DEADLINE: Duration = Duration::from_secs(10);
/// Expiry of the ordered consumers' pull requests (their idle heartbeat is half of it), so a
/// replay of a stream that lost its leader notices within seconds, not the client's default 30 s.
pub const ORDERED_PULL_EXPIRES: Duration = Duration::from_secs(2);
/// Replays that may fail in a row before the reader waits for the next reconnect.
pub const MAX_ATTEMPTS: u32 = 3;
/// How long live messages are held back while a replay is being opened: long enough for a
/// healthy stream (milliseconds), so replayed history still comes before what arrives live;
/// beyond it, a stream that does not answer no longer keeps live messages from the reader.
pub const OPEN_HOLD: Duration = Duration::from_secs(1);
/// How often the client's reconnect counter is read.
const RECONNECT_POLL: Duration = Duration::from_millis(250);

/// Where a replay after a reconnect starts.
#[derive(Debug, Clone, Copy)]
pub enum CatchUp {
    /// From the beginning of the stream (small streams, readers that deduplicate by id).
    All,
    /// From this long before the last live message received (from the beginning if none was).
    SinceLastLive(Duration),
}

/// What the stream and the subjects are.
#[derive(Debug, Clone)]
pub struct Source {
    /// What the messages are, for logs: "agent events", "overrides".
    pub what: &'static str,
    /// The JetStream stream replays read.
    pub stream: &'static str,
    /// The replay consumer's subject filter.
    pub filter: String,
    /// The core NATS subjects followed live.
    pub subjects: Vec<String>,
    /// Where a replay after a reconnect starts.
    pub catch_up: CatchUp,
    /// Live messages held back during one replay; beyond this the oldest are dropped.
    pub max_held: usize,
}

/// What woke [`Replaying::next`] up.
enum Woke {
    Opened(Result<Option<Replay>, String>),
    HoldOver,
    Tick,
    Live(Option<Message>),
}

/// One thing the reader is told.
#[derive(Debug)]
pub enum Delivery {
    /// A message as it was published (or held back during a replay and released after it).
    Live(Message),
    /// A message read back from the stream.
    Replayed(Message),
    /// The client reconnected: a catch-up replay starts.
    Reconnected,
    /// A live message held back during a replay was dropped (more than `max_held` arrived).
    Dropped,
}

struct Replay {
    messages: BoxStream<'static, Result<jetstream::Message, String>>,
    last: u64,
    read: u64,
}

/// A replay being opened (stream info, consumer): live messages keep flowing meanwhile, since
/// a stream without a leader (a node just died) can take the whole deadline to answer.
type Opening = futures::future::BoxFuture<'static, Result<Option<Replay>, String>>;

/// A live subscription with replays at start and after every reconnect.
pub struct Replaying {
    source: Source,
    js: jetstream::Context,
    live: SelectAll<Subscriber>,
    stats: Arc<Statistics>,
    connects: u64,
    poll: tokio::time::Interval,
    due: Option<DeliverPolicy>,
    opening: Option<(Opening, DeliverPolicy)>,
    /// Live messages are held back until then while `opening`.
    hold_until: tokio::time::Instant,
    replay: Option<Replay>,
    deadline: tokio::time::Instant,
    held: VecDeque<Message>,
    last_live: Option<OffsetDateTime>,
    failures: u32,
    retry: Option<DeliverPolicy>,
}

impl Replaying {
    /// Subscribes to `source`'s subjects, retrying until it can; `None` when stopped first.
    /// The first [`next`](Self::next) starts the replay of everything the stream retains.
    pub async fn subscribe(
        js: jetstream::Context,
        source: Source,
        shutdown: &CancellationToken,
    ) -> Option<Self> {
        let client = js.client();
        let live = loop {
            match subscribe_all(&client, &source.subjects).await {
                Ok(live) => break live,
                Err(e) => {
                    tracing::warn!("cannot subscribe to {}: {e}; retrying", source.what);
                    tokio::select! {
                        () = shutdown.cancelled() => return None,
                        () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
            }
        };
        let stats = client.statistics();
        let connects = stats.connects.load(Ordering::Relaxed);
        let mut poll = tokio::time::interval(RECONNECT_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Some(Self {
            source,
            js,
            live,
            stats,
            connects,
            poll,
            due: Some(DeliverPolicy::All),
            opening: None,
            hold_until: tokio::time::Instant::now(),
            replay: None,
            deadline: tokio::time::Instant::now(),
            held: VecDeque::new(),
            last_live: None,
            failures: 0,
            retry: None,
        })
    }

    /// The next delivery; `None` when `shutdown` fires or the live subscription ends.
    pub async fn next(&mut self, shutdown: &CancellationToken) -> Option<Delivery> {
        loop {
            if self.replay.is_none()
                && self.opening.is_none()
                && let Some(policy) = self.due.take()
            {
                self.start_replay(policy);
            }
            if self.replay.is_some() {
                match self.step_replay(shutdown).await? {
                    Some(d) => return Some(d),
                    None => continue,
                }
            }
            let holding = self.opening.is_some() && tokio::time::Instant::now() < self.hold_until;
            if !holding && let Some(m) = self.held.pop_front() {
                return Some(Delivery::Live(m));
            }
            let woke = {
                let opening = &mut self.opening;
                let live = &mut self.live;
                let poll = &mut self.poll;
                let hold_until = self.hold_until;
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    () = tokio::time::sleep_until(hold_until), if holding => Woke::HoldOver,
                    r = async {
                        match opening.as_mut() {
                            Some((f, _)) => f.await,
                            None => std::future::pending().await,
                        }
                    } => Woke::Opened(r),
                    _ = poll.tick() => Woke::Tick,
                    m = live.next() => Woke::Live(m),
                }
            };
            match woke {
                Woke::Opened(r) => self.opened(r),
                Woke::HoldOver => {}
                Woke::Tick => {
                    if let Some(p) = self.retry.take() {
                        self.due = Some(p);
                    }
                    let now = self.stats.connects.load(Ordering::Relaxed);
                    if now != self.connects {
                        self.connects = now;
                        self.failures = 0;
                        self.retry = None;
                        self.due = Some(self.catch_up_policy());
                        tracing::info!(
                            "NATS reconnected; catching up on {} from the stream",
                            self.source.what
                        );
                        return Some(Delivery::Reconnected);
                    }
                }
                Woke::Live(None) => {
                    tracing::error!("the {} subscription ended", self.source.what);
                    return None;
                }
                Woke::Live(Some(m)) => {
                    self.last_live = Some(OffsetDateTime::now_utc());
                    if holding {
                        if let Some(d) = self.hold(m) {
                            return Some(d);
                        }
                        continue;
                    }
                    return Some(Delivery::Live(m));
                }
            }
        }
    }

    fn catch_up_policy(&self) -> DeliverPolicy {
        match (self.source.catch_up, self.last_live) {
            (CatchUp::SinceLastLive(overlap), Some(t)) => DeliverPolicy::ByStartTime {
                start_time: t - overlap,
            },
            _ => DeliverPolicy::All,
        }
    }

    /// Starts opening a replay from `policy`, bounded by [`REPLAY_DEADLINE`] from now.
    fn start_replay(&mut self, policy: DeliverPolicy) {
        let now = tokio::time::Instant::now();
        self.deadline = now + REPLAY_DEADLINE;
        self.hold_until = now + OPEN_HOLD;
        let (js, source, deadline) = (self.js.clone(), self.source.clone(), self.deadline);
        let opening = async move {
            tokio::time::timeout_at(deadline, open(&js, &source, policy))
                .await
                .unwrap_or_else(|_| Err("the stream did not answer in time".to_owned()))
        };
        self.opening = Some((Box::pin(opening), policy));
    }

    /// The replay is open (or there is nothing to replay, or it failed: retried at the next poll).
    fn opened(&mut self, r: Result<Option<Replay>, String>) {
        let Some((_, policy)) = self.opening.take() else {
            return;
        };
        match r {
            Ok(Some(replay)) => self.replay = Some(replay),
            Ok(None) => self.failures = 0,
            Err(e) => self.retry_later(policy, &e),
        }
    }

    /// One step of the running replay: a replayed message, a held-back live one (`None`, not
    /// delivered yet), or the end of the replay. `None` outside when stopped.
    async fn step_replay(&mut self, shutdown: &CancellationToken) -> Option<Option<Delivery>> {
        let replay = self.replay.as_mut()?;
        tokio::select! {
            () = shutdown.cancelled() => None,
            () = tokio::time::sleep_until(self.deadline) => {
                let read = replay.read;
                self.replay = None;
                tracing::warn!(read, "replaying {} took longer than {REPLAY_DEADLINE:?}; going on with live messages",
                    self.source.what);
                Some(None)
            }
            m = replay.messages.next() => match m {
                Some(Ok(m)) => {
                    replay.read += 1;
                    let (seq, pending) = m
                        .info()
                        .map(|i| (i.stream_sequence, i.pending))
                        .unwrap_or((u64::MAX, 0));
                    if seq >= replay.last || pending == 0 {
                        let read = replay.read;
                        self.replay = None;
                        self.failures = 0;
                        tracing::info!(read, held = self.held.len(), "replayed {} from the stream", self.source.what);
                    }
                    Some(Some(Delivery::Replayed(m.message)))
                }
                Some(Err(e)) => {
                    self.replay = None;
                    self.retry_later(self.catch_up_policy(), &format!("replay interrupted: {e}"));
                    Some(None)
                }
                None => {
                    self.replay = None;
                    self.retry_later(self.catch_up_policy(), "the replay ended early");
                    Some(None)
                }
            },
            Some(m) = self.live.next() => {
                self.last_live = Some(OffsetDateTime::now_utc());
                Some(self.hold(m))
            }
        }
    }

    /// Holds a live message back until the replay is done; `Dropped` when the oldest held one
    /// had to go to make room.
    fn hold(&mut self, m: Message) -> Option<Delivery> {
        let dropped = self.held.len() >= self.source.max_held;
        if dropped {
            self.held.pop_front();
        }
        self.held.push_back(m);
        dropped.then_some(Delivery::Dropped)
    }

    fn retry_later(&mut self, policy: DeliverPolicy, why: &str) {
        self.failures += 1;
        if self.failures >= MAX_ATTEMPTS {
            tracing::warn!(
                "cannot replay {} from {}: {why}; going on with live messages, trying again after the next reconnect",
                self.source.what,
                self.source.stream
            );
            return;
        }
        tracing::warn!(
            "cannot replay {} from {}: {why}; going on with live messages, retrying shortly",
            self.source.what,
            self.source.stream
        );
        self.retry = Some(policy);
    }
}

/// Opens a replay consumer from `policy` up to what the stream holds now; `None` when there is
/// nothing to replay.
async fn open(
    js: &jetstream::Context,
    source: &Source,
    policy: DeliverPolicy,
) -> Result<Option<Replay>, String> {
    let mut stream = js
        .get_stream(source.stream)
        .await
        .map_err(|e| format!("cannot open stream {}: {e}", source.stream))?;
    let info = stream
        .info()
        .await
        .map_err(|e| format!("cannot read stream {}: {e}", source.stream))?;
    let (messages, last) = (info.state.messages, info.state.last_sequence);
    if messages == 0 {
        return Ok(None);
    }
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: source.filter.clone(),
            deliver_policy: policy,
            max_expires: ORDERED_PULL_EXPIRES,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("cannot create a replay consumer: {e}"))?;
    if consumer.cached_info().num_pending == 0 {
        return Ok(None);
    }
    let messages = consumer
        .messages()
        .await
        .map_err(|e| format!("cannot read the replay: {e}"))?
        .map(|m| m.map_err(|e| e.to_string()))
        .boxed();
    Ok(Some(Replay {
        messages,
        last,
        read: 0,
    }))
}

async fn subscribe_all(
    client: &async_nats::Client,
    subjects: &[String],
) -> Result<SelectAll<Subscriber>, String> {
    let mut all = SelectAll::new();
    for s in subjects {
        all.push(
            client
                .subscribe(s.clone())
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    Ok(all)
}
