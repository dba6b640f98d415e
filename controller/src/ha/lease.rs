//! The leader-lease task: campaigns for the lease key, renews it while leader, steps down when
//! renewals fail, releases it on graceful shutdown, and publishes what it knows.
//!
//! This is the I/O shell around the pure rules in [`crate::ha::clock`]; it only reads the
//! monotonic clock (`tokio::time::Instant`) and talks to a JetStream KV bucket made by
//! [`crate::ha::kv::ensure_bucket`] with `max_age` = lease. It works on nats-server 2.9.10,
//! which has no per-key TTL and no expiry markers: a dead leader's key simply disappears
//! `max_age` after its last renewal.
//!
//! - **Campaign**: read the key; if it is missing, deleted, or a graceful release, write our
//!   record with compare-and-set (`create`, or `update` on the release's revision). The revision
//!   that write returns is the **epoch**. Revisions are stream sequence numbers, which keep
//!   growing across expiry, so every new term gets a larger epoch. While someone else holds the
//!   key we only read it, and only when their renewals stop arriving through our watch.
//! - **Take our own record back**: if the key holds a held record of this run (our term lapsed
//!   while the bus was away, or the ack of our write was lost), it is ours, not another
//!   holder's to wait out: `update` on its revision. That starts a new term whose epoch is the
//!   new revision; the lapsed term's epoch is never used again. It acts at once when every
//!   write we sent since our last term began was a compare-and-set on our own revision (then
//!   nobody else can have held the key meanwhile, see [`PreviousHolder::Ourselves`]);
//!   otherwise it waits like any new leader. A record of an earlier run with our holder id is
//!   another holder's: that process may still be acting.
//! - **Renew** every `renew_every` with `update` on our last revision. Renewals change the
//!   revision, never the epoch.
//! - **Step down** at once when a renewal finds another revision that is not ours (someone else
//!   won after our key expired); on bus errors keep retrying, and step down when the last
//!   successful renewal's send is `lease − margin` old. Then campaign again (which takes our
//!   own record back as soon as the bus answers, if it is still there).
//! - **Release** on shutdown: stop acting, then write a release record on our revision, so the
//!   standby wins at once and may act at once. (A release is a new message, not a stream
//!   delete, so it works on a bucket with `deny_delete`.)

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv;
use futures::StreamExt;
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_util::sync::CancellationToken;

use crate::ha::clock::{LeaseClock, PreviousHolder, Term};
use crate::ha::leadership::{ActingWindow, Leadership, LeaseHandle, Role, SharedWindow};
use crate::ha::record::{LeaseRecord, LeaseValue};
use crate::ha::sightings::Sightings;

/// The lease bucket's default name (stream `KV_sitewarden-lease`).
pub const DEFAULT_BUCKET: &str = "sitewarden-lease";
/// The key in the lease bucket.
pub const DEFAULT_KEY: &str = "leader";
/// How often a standby checks whether the lease is free once renewals stop arriving.
pub const DEFAULT_POLL_EVERY: Duration = Duration::from_millis(200);

/// How the lease task runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    /// Lease, renewal interval and margin.
    pub clock: LeaseClock,
    /// The key in the lease bucket (default `leader`).
    pub key: String,
    /// Campaign polling and renewal retry interval (default 200 ms).
    pub poll_every: Duration,
    /// How long one request to the bus may take (default: half the renewal interval, so a
    /// request hanging on a dead node leaves time to retry on another before the acting window
    /// closes). A renewal request is also cut off when the acting window closes.
    pub request_timeout: Duration,
}

impl LeaseConfig {
    /// Defaults around the given timing.
    pub fn new(clock: LeaseClock) -> Self {
        Self {
            clock,
            key: DEFAULT_KEY.to_owned(),
            poll_every: DEFAULT_POLL_EVERY,
            request_timeout: clock.renew_every() / 2,
        }
    }
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self::new(LeaseClock::default())
    }
}

/// One controller's lease task. Create it with [`Lease::new`], run it with [`Lease::run`].
#[derive(Debug)]
pub struct Lease {
    /// The lease bucket.
    store: kv::Store,
    /// Our holder id.
    holder: Arc<str>,
    /// Unique per run, so a restarted controller never mistakes its predecessor's key for its own.
    incarnation: String,
    /// Timing and key.
    config: LeaseConfig,
    /// The acting window read by [`LeaseHandle::is_acting_now`].
    window: Arc<SharedWindow>,
    /// Leadership snapshots.
    tx: watch::Sender<Leadership>,
}

/// How a campaign went.
enum Campaign {
    /// We hold the lease now; `own_record` when we took back a record of our own (a lapsed
    /// term, or a write of ours whose acknowledgement was lost) rather than a free key.
    Won {
        /// The new term.
        term: Term,
        /// The key held our own record, and we renewed it.
        own_record: bool,
    },
    /// Someone else holds it.
    Held(Option<String>),
    /// The bus did not answer or refused.
    Bus(String),
}

/// What a campaign found on the key and writes on.
#[derive(Debug, Clone, Copy)]
enum Claim {
    /// Nothing (expired, never written, or a delete marker): `create`.
    Free,
    /// A graceful release at this revision: `update` on it.
    Release(u64),
    /// Our own held record (this run) at this revision: `update` on it.
    Own(u64),
}

impl Claim {
    /// Who held the key before a write on this claim succeeded, for the takeover wait.
    /// `resumable` is the drive loop's flag, `seen` what our watch of the key knows.
    fn previous_holder(self, resumable: bool, seen: PreviousHolder) -> PreviousHolder {
        match self {
            Self::Release(_) => PreviousHolder::Released,
            Self::Own(_) if resumable => PreviousHolder::Ourselves,
            // Our record, but a create of ours may have started its chain (its ack lost):
            // whoever held the key before that create may still be acting.
            Self::Own(_) | Self::Free => seen,
        }
    }
}

/// How a renewal went.
enum Renewal {
    /// Renewed; the deadline moved.
    Renewed,
    /// Our earlier write landed but its ack was lost or came too late; the deadline counts
    /// from the first send on the previous revision, the next renewal is on schedule.
    Adopted,
    /// Someone else holds the key now, or it expired.
    Lost(Option<String>),
    /// The bus did not answer or refused; retry.
    Failed(String),
}

impl Lease {
    /// A lease task for `holder_id` on `store` (the lease bucket), and a handle to watch it.
    pub fn new(
        store: kv::Store,
        holder_id: impl Into<String>,
        config: LeaseConfig,
    ) -> (Self, LeaseHandle) {
        let holder: Arc<str> = Arc::from(holder_id.into());
        let window = Arc::new(SharedWindow::default());
        let (tx, rx) = watch::channel(Leadership::unknown());
        let handle = LeaseHandle::new(holder.clone(), window.clone(), rx);
        let lease = Self {
            store,
            holder,
            incarnation: new_incarnation(),
            config,
            window,
            tx,
        };
        (lease, handle)
    }

    /// Runs until `shutdown` is cancelled; then releases the lease if we hold it.
    ///
    /// Cancel `shutdown` only after the runtime stopped writing: the release lets the standby
    /// act at once. Dropping or aborting this future instead (a crash) leaves the key to expire,
    /// and the standby takes over about one lease after the last renewal; handles keep
    /// answering [`LeaseHandle::is_acting_now`] from the last acting window until it closes.
    pub async fn run(self, shutdown: CancellationToken) {
        let sightings = Mutex::new(Sightings::default());
        let released = Notify::new();
        tokio::select! {
            () = self.watch_key(&sightings, &released) => {}
            () = self.drive(&sightings, &released, &shutdown) => {}
        }
    }

    /// Campaign, renew, step down, release: the main loop.
    async fn drive(
        &self,
        sightings: &Mutex<Sightings>,
        released: &Notify,
        shutdown: &CancellationToken,
    ) {
        let clock = self.config.clock;
        let mut term: Option<Term> = None;
        // What we are while not leader.
        let mut standby = Role::Unknown;
        // When to retry a failed renewal; `None` = on schedule.
        let mut retry_at: Option<Instant> = None;
        // The cause of current bus trouble, logged once per cause.
        let mut trouble: Option<String> = None;
        // Every write we sent since our last term began was a compare-and-set on our own
        // revision, so a record of ours on the key proves nobody else held it since (see
        // `PreviousHolder::Ourselves`). Set on winning; cleared when we find the key held by
        // someone else and right before we send a create or take over a release.
        let mut resumable = false;
        loop {
            self.publish(term.as_ref(), &standby);
            let Some(t) = term.as_mut() else {
                let may_be_free =
                    lock(sightings).may_be_free(&clock, Instant::now(), Duration::ZERO);
                if may_be_free {
                    let outcome = tokio::select! {
                        () = shutdown.cancelled() => return self.publish_stopped(),
                        c = self.campaign(sightings, &mut resumable) => c,
                    };
                    match outcome {
                        Campaign::Won {
                            term: won,
                            own_record,
                        } => {
                            self.set_window(Some(&won));
                            note_recovered(&mut trouble);
                            tracing::info!(
                                holder = %self.holder,
                                epoch = won.epoch(),
                                acting_in = ?won.acting_from().saturating_duration_since(Instant::now()),
                                "{}",
                                if own_record {
                                    "took our own leader lease record back under a new epoch"
                                } else {
                                    "won the leader lease"
                                }
                            );
                            term = Some(won);
                            resumable = true;
                            retry_at = None;
                            continue;
                        }
                        Campaign::Held(holder) => {
                            note_recovered(&mut trouble);
                            standby = Role::Standby { holder };
                        }
                        Campaign::Bus(why) => {
                            note_trouble(&mut trouble, &why);
                            standby = Role::Unknown;
                        }
                    }
                } else if matches!(standby, Role::Standby { .. }) {
                    standby = Role::Standby {
                        holder: lock(sightings).holder(),
                    };
                }
                self.publish(None, &standby);
                tokio::select! {
                    () = shutdown.cancelled() => return self.publish_stopped(),
                    () = released.notified() => {}
                    () = sleep(self.config.poll_every) => {}
                }
                continue;
            };

            let now = Instant::now();
            if t.has_lapsed(&clock, now) {
                tracing::warn!(
                    holder = %self.holder,
                    epoch = t.epoch(),
                    "leader lease not renewed for lease − margin ({:?}); stepped down",
                    clock.acting_window()
                );
                self.set_window(None);
                term = None;
                standby = Role::Unknown;
                continue;
            }
            let due = retry_at.unwrap_or_else(|| t.next_renewal(&clock));
            let mut wake = due.min(t.acting_deadline(&clock));
            if now < t.acting_from() {
                wake = wake.min(t.acting_from());
            }
            tokio::select! {
                () = shutdown.cancelled() => {
                    let t = *t;
                    return self.release(&t).await;
                }
                () = sleep_until(wake) => {}
            }
            if Instant::now() < due {
                continue; // woke to publish an edge (acting from / acting until)
            }
            match self.renew(t).await {
                // Adopted: one of our renewals landed, and the deadline counts from the first
                // of them (the term already says so).
                Renewal::Renewed | Renewal::Adopted => {
                    note_recovered(&mut trouble);
                    self.set_window(Some(t));
                    retry_at = None;
                }
                Renewal::Failed(why) => {
                    note_trouble(&mut trouble, &why);
                    retry_at = Some(Instant::now() + self.config.poll_every);
                }
                Renewal::Lost(holder) => {
                    tracing::warn!(
                        holder = %self.holder,
                        epoch = t.epoch(),
                        new_holder = ?holder,
                        "leader lease lost to another holder or expired; stepped down"
                    );
                    self.set_window(None);
                    term = None;
                    standby = Role::Standby { holder };
                    resumable = false;
                    retry_at = None;
                }
            }
        }
    }

    /// One attempt to win the lease, or to take back our own record.
    ///
    /// `resumable` is the drive loop's flag (see there); this clears it when the key holds
    /// someone else's record, and before sending a create or taking over a release, which
    /// start a chain of writes that is not only ours.
    async fn campaign(&self, sightings: &Mutex<Sightings>, resumable: &mut bool) -> Campaign {
        let key = self.config.key.as_str();
        let limit = self.config.request_timeout;
        let current = match timeout(limit, self.store.entry(key)).await {
            Ok(Ok(entry)) => entry,
            Ok(Err(e)) => return Campaign::Bus(format!("reading the lease: {e}")),
            Err(_) => return Campaign::Bus(format!("reading the lease timed out after {limit:?}")),
        };
        let ours = LeaseRecord::held(&self.holder, &self.incarnation).encode();
        let claim = match &current {
            Some(e) if e.operation == kv::Operation::Put => {
                let value = LeaseValue::decode(&e.value);
                if value.is_held_by(&self.incarnation) {
                    // Our own record (our term lapsed while the bus was away, or the ack of
                    // a write of ours was lost): it is not someone else's lease to wait out.
                    Claim::Own(e.revision)
                } else if value.is_release() {
                    Claim::Release(e.revision)
                } else {
                    // Someone else's: our chain of writes on the key is over.
                    *resumable = false;
                    return Campaign::Held(value.holder());
                }
            }
            // Missing (expired), or a delete/purge marker: `create` handles both.
            _ => Claim::Free,
        };
        if !matches!(claim, Claim::Own(_)) {
            *resumable = false;
        }
        let sent_at = Instant::now();
        let written = match claim {
            Claim::Own(rev) | Claim::Release(rev) => {
                timeout(limit, self.store.update(key, ours.into(), rev))
                    .await
                    .map(|r| {
                        r.map_err(|e| {
                            (
                                e.kind() == kv::UpdateErrorKind::WrongLastRevision,
                                e.to_string(),
                            )
                        })
                    })
            }
            Claim::Free => timeout(limit, self.store.create(key, ours.into()))
                .await
                .map(|r| {
                    r.map_err(|e| {
                        (
                            e.kind() == kv::CreateErrorKind::AlreadyExists,
                            e.to_string(),
                        )
                    })
                }),
        };
        match written {
            Ok(Ok(epoch)) => {
                let won_at = Instant::now();
                let previous = claim.previous_holder(*resumable, lock(sightings).previous_holder());
                Campaign::Won {
                    term: Term::begin(&self.config.clock, epoch, sent_at, won_at, previous),
                    own_record: matches!(claim, Claim::Own(_)),
                }
            }
            // Someone else won the race; our watch will name them.
            Ok(Err((true, _))) => Campaign::Held(lock(sightings).holder()),
            Ok(Err((false, e))) => Campaign::Bus(format!("writing the lease: {e}")),
            Err(_) => Campaign::Bus(format!("writing the lease timed out after {limit:?}")),
        }
    }

    /// One renewal attempt, cut off when the acting window closes.
    async fn renew(&self, t: &mut Term) -> Renewal {
        let key = self.config.key.as_str();
        let sent_at = Instant::now();
        let limit = self
            .config
            .request_timeout
            .min(
                t.acting_deadline(&self.config.clock)
                    .saturating_duration_since(sent_at),
            )
            .max(Duration::from_millis(1));
        let ours = LeaseRecord::held(&self.holder, &self.incarnation).encode();
        t.sending(sent_at);
        match timeout(limit, self.store.update(key, ours.into(), t.revision())).await {
            Ok(Ok(revision)) => {
                t.renewed(sent_at, revision);
                Renewal::Renewed
            }
            Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                // Someone else's write, an expired key, or our own write whose ack was lost or
                // came after our timeout (a slow bus). Ask the stream leader, which refused
                // the write: a direct get may be answered by a replica that lags behind it.
                match timeout(limit, self.leader_entry(key)).await {
                    Ok(Ok(Some((revision, Some(value)))))
                        if value.is_held_by(&self.incarnation) =>
                    {
                        if revision == t.revision() {
                            // The leader refused a revision it still shows: retry on schedule
                            // rather than in a tight loop.
                            return Renewal::Failed(format!(
                                "renewal refused at revision {revision} but the key still has it"
                            ));
                        }
                        t.adopt_revision(revision);
                        Renewal::Adopted
                    }
                    Ok(Ok(Some((_, Some(value))))) => Renewal::Lost(value.holder()),
                    Ok(Ok(_)) => Renewal::Lost(None),
                    Ok(Err(e)) => Renewal::Failed(format!("reading the lease: {e}")),
                    Err(_) => {
                        Renewal::Failed(format!("reading the lease timed out after {limit:?}"))
                    }
                }
            }
            Ok(Err(e)) => Renewal::Failed(format!("renewing the lease: {e}")),
            Err(_) => Renewal::Failed(format!("renewing the lease timed out after {limit:?}")),
        }
    }

    /// The key's latest message as the lease stream's leader has it: its revision and its value
    /// (`None` for a delete or purge marker); `None` when the key has none (expired, or never
    /// written).
    async fn leader_entry(&self, key: &str) -> Result<Option<(u64, Option<LeaseValue>)>, String> {
        let subject = format!("{}{key}", self.store.prefix);
        match self
            .store
            .stream
            .get_last_raw_message_by_subject(&subject)
            .await
        {
            Ok(m) => {
                let put = m
                    .headers
                    .get("KV-Operation")
                    .is_none_or(|op| op.as_str() == "PUT");
                Ok(Some((
                    m.sequence,
                    put.then(|| LeaseValue::decode(&m.payload)),
                )))
            }
            Err(e)
                if e.kind()
                    == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
            {
                Ok(None)
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Graceful shutdown as leader: stop acting first, then write the release.
    async fn release(&self, t: &Term) {
        self.set_window(None);
        self.publish_stopped();
        let record = LeaseRecord::held(&self.holder, &self.incarnation).release();
        let limit = self.config.request_timeout;
        match timeout(
            limit,
            self.store
                .update(&self.config.key, record.encode().into(), t.revision()),
        )
        .await
        {
            Ok(Ok(_)) => {
                tracing::info!(holder = %self.holder, epoch = t.epoch(), "released the leader lease")
            }
            Ok(Err(e)) => tracing::warn!(
                holder = %self.holder,
                epoch = t.epoch(),
                "could not release the leader lease ({e}); the standby takes over when it expires"
            ),
            Err(_) => tracing::warn!(
                holder = %self.holder,
                epoch = t.epoch(),
                "releasing the leader lease timed out after {limit:?}; the standby takes over when it expires"
            ),
        }
    }

    /// Follows the lease key, recording renewals and releases; restarts the watch when it
    /// breaks (and forgets what it saw, since renewals may be missed meanwhile).
    async fn watch_key(&self, sightings: &Mutex<Sightings>, released: &Notify) {
        loop {
            match timeout(
                self.config.request_timeout,
                self.store.watch_with_history(&self.config.key),
            )
            .await
            {
                Ok(Ok(mut watch)) => {
                    while let Some(item) = watch.next().await {
                        let entry = match item {
                            Ok(entry) => entry,
                            Err(e) => {
                                tracing::debug!("lease watch broke: {e}");
                                break;
                            }
                        };
                        let now = Instant::now();
                        let mut s = lock(sightings);
                        match entry.operation {
                            kv::Operation::Put => {
                                let value = LeaseValue::decode(&entry.value);
                                if value.is_written_by(&self.incarnation) {
                                    // Our own writes: when we step down we stop acting at once,
                                    // so our earlier terms never need a takeover wait. Counting
                                    // them would make us wait for our own winning create.
                                } else if value.is_release() {
                                    s.release();
                                    released.notify_one();
                                } else {
                                    s.renewal(value.holder(), now);
                                }
                            }
                            kv::Operation::Delete | kv::Operation::Purge => {
                                s.removed();
                                released.notify_one();
                            }
                        }
                    }
                }
                Ok(Err(e)) => tracing::debug!("cannot watch the lease: {e}"),
                Err(_) => tracing::debug!("starting the lease watch timed out"),
            }
            lock(sightings).lost();
            sleep(self.config.poll_every).await;
        }
    }

    fn set_window(&self, term: Option<&Term>) {
        self.window.set(term.map(|t| ActingWindow {
            epoch: t.epoch(),
            from: t.acting_from(),
            until: t.acting_deadline(&self.config.clock),
        }));
    }

    /// Publishes the current snapshot if it changed, and logs the change.
    fn publish(&self, term: Option<&Term>, standby: &Role) {
        let next = match term {
            Some(t) => Leadership {
                role: Role::Leader { epoch: t.epoch() },
                acting: t.is_acting(&self.config.clock, Instant::now()),
                epoch: Some(t.epoch()),
            },
            None => Leadership {
                role: standby.clone(),
                acting: false,
                epoch: None,
            },
        };
        self.tx.send_if_modified(|current| {
            if *current == next {
                return false;
            }
            tracing::info!(
                holder = %self.holder,
                role = ?next.role,
                acting = next.acting,
                "leadership changed"
            );
            *current = next;
            true
        });
    }

    fn publish_stopped(&self) {
        self.publish(None, &Role::Standby { holder: None });
    }
}

fn lock(s: &Mutex<Sightings>) -> MutexGuard<'_, Sightings> {
    // Sightings is plain data updated in one statement: a poisoned lock is still consistent.
    s.lock().unwrap_or_else(|p| p.into_inner())
}

fn note_trouble(trouble: &mut Option<String>, why: &str) {
    if trouble.is_none() {
        tracing::warn!("leader lease: bus trouble: {why}");
    }
    *trouble = Some(why.to_owned());
}

fn note_recovered(trouble: &mut Option<String>) {
    if trouble.take().is_some() {
        tracing::info!("leader lease: bus answers again");
    }
}

/// A random id for this run of the lease task.
fn new_incarnation() -> String {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(d) = SystemTime::now().duration_since(UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_record_is_taken_back_at_once_only_while_every_write_since_our_term_was_ours() {
        let t0 = Instant::now();
        let seen = PreviousHolder::LastRenewalSeen(t0);
        // A lapsed term of ours, renewed only by compare-and-set since it began.
        assert_eq!(
            Claim::Own(7).previous_holder(true, seen),
            PreviousHolder::Ourselves
        );
        // Our record after a create whose ack was lost: the holder before it may still act.
        assert_eq!(Claim::Own(7).previous_holder(false, seen), seen);
        assert_eq!(
            Claim::Own(7).previous_holder(false, PreviousHolder::Unobserved),
            PreviousHolder::Unobserved
        );
        assert_eq!(Claim::Free.previous_holder(true, seen), seen);
        assert_eq!(
            Claim::Release(3).previous_holder(false, seen),
            PreviousHolder::Released
        );
    }
}
