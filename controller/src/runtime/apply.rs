//! Applying record changes: intent first, then the provider, then verification and bookkeeping.
//!
//! The changes of one engine step arrive together and are applied as one group (see
//! [`Applier::run`]): the per-name steps below run side by side for every name of the group, and
//! step 4 is one [`DnsProvider::apply_many`] for all of them (a few batch calls on a provider
//! with a batch API). For every `SetRecord` the leader decides, the applier
//! 1. checks, on the monotonic clock at that very moment, that this controller still holds the
//!    lease with the command's epoch (a leader paused past its lease wakes up and writes nothing);
//! 2. refuses a generation not newer than the newest applied one for that name (KV `ns.<name>`);
//! 3. records the intent (KV `intent.<name>`, compare-and-set, refused if a newer epoch wrote it)
//!    and, at the same time, audits it, waiting until both are stored (an intent the bucket
//!    refuses is settled in the audit trail as `apply_refused`, and nothing is written);
//! 4. unless the engine has issued a newer generation for the name meanwhile (then the change is
//!    settled as superseded and nothing is written), asks the provider to compare-and-set the record with the epoch in its ownership marker
//!    (the provider refuses if the record shows a newer epoch) and verifies by reading back;
//! 5. audits the settlement (`apply_applied`, `apply_refused`, `apply_failed`), waits until it is
//!    stored, then marks the intent and stores the new `ns.<name>` (compare-and-set).
//!
//! Audit before effect: the `intent` record is stored before the provider write and the
//! settlement before the state bucket marks the intent done, so a leader killed at any moment
//! leaves no write the audit trail does not show, and no intent marked done whose settlement is
//! missing. If the stream does not store the intent in time
//! ([`STORED_WAIT`](super::audit::STORED_WAIT)), nothing is written and a failure is reported
//! (the engine re-plans); if it does not store the settlement, the intent stays pending for a
//! later leader to settle. A later leader's `intent_applied` / `intent_superseded` is likewise
//! stored before it writes its verdict on the intent.
//!
//! A leader that crashes between 3 and 5 leaves a pending intent: the next leader reads the
//! record, whose marker tells whether the change landed, and the engine re-decides from there —
//! so a change is applied once or superseded, never twice. Outcomes go back to the engine as
//! provider reports and to the audit trail.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::audit::{AuditRecord, AuditSink};
use super::metrics::Metrics;
use crate::engine::{CallStats, Epoch, FailureClass, Generation, Input, ProviderReport, SetRecord};
use crate::ha::kv_store::KvStore;
use crate::provider::{ApplyOutcome, Change, DnsProvider, ProviderError, RecordState, Refusal};
use sitewarden_api::audit::{AuditEvent, IntentSettlement, Role, RuntimeEvent, Settlement};
use sitewarden_contract::DnsName;

/// What a record holds, as the engine takes it: the provider's CNAME content parsed into a
/// [`DnsName`] (lowercase, no trailing dot). Content that is not a DNS name cannot be one of our
/// targets and cannot be compared with one, so reading it fails with a message naming it
/// instead of handing the engine something it would misread.
pub(crate) fn record_content(
    name: &DnsName,
    state: &RecordState,
) -> Result<Option<DnsName>, ProviderError> {
    state
        .content
        .as_deref()
        .map(|c| {
            DnsName::new(c).map_err(|e| {
                ProviderError::Rejected(format!(
                    "the record {name} holds {c:?}, which is not a DNS name: it {e}; fix the record by hand"
                ))
            })
        })
        .transpose()
}

/// Answers "may I act, and with which epoch?" from the lease's monotonic clock, at call time.
pub type ActingCheck = Arc<dyn Fn() -> Option<Epoch> + Send + Sync>;

/// What the state bucket keeps per namespace (`ns.<name>`) and per pending change
/// (`intent.<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordBook {
    /// The plan generation.
    pub generation: Generation,
    /// The CNAME target.
    pub target: DnsName,
    /// The epoch of the leader that wrote it.
    pub epoch: Epoch,
    /// `pending`, `applied`, `refused`, `failed` or `superseded` (intents); `applied` (ns
    /// entries).
    pub status: String,
    /// When it was written.
    pub at: chrono::DateTime<Utc>,
    /// Why a later leader settled it (`applied` or `superseded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// How long a record's read waits for the state bucket's `ns.<name>` entry.
const BOOK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// A map every task of the applier shares.
pub type Shared<T> = Arc<std::sync::Mutex<T>>;

fn locked<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How many names' bookkeeping (state bucket and audit stream round trips) a group runs at once.
const BOOKS_IN_FLIGHT: usize = 256;

/// Applies `SetRecord` commands for the leader. Clones share everything (a group of changes
/// runs on a clone, in its own task).
#[derive(Clone)]
pub struct Applier {
    /// The DNS provider.
    pub provider: Arc<dyn DnsProvider>,
    /// The state bucket: JetStream KV in the runtime, [`MemoryKv`](crate::ha::kv_store::MemoryKv)
    /// in unit tests; `None` keeps no bookkeeping (unit tests of the provider path alone).
    pub store: Option<Arc<dyn KvStore>>,
    /// The lease check.
    pub acting: ActingCheck,
    /// Decide and audit, never write to the provider.
    pub dry_run: bool,
    /// Adopt records without our marker (`on_drift = "enforce"` namespaces).
    pub adopt_unmarked: Arc<BTreeMap<DnsName, bool>>,
    /// The audit trail.
    pub audit: AuditSink,
    /// This controller's id, for audit records.
    pub controller: String,
    /// Runtime metrics.
    pub metrics: Arc<Metrics>,
    /// Where provider reports go (the engine loop).
    pub reports: mpsc::Sender<Input>,
    /// Last content read per name, the `expected` value of the next compare-and-set.
    pub last_seen: Shared<BTreeMap<DnsName, Option<String>>>,
    /// Dry run: what the records would hold now, `(target, generation)`, so the engine sees the
    /// consequences of its own decisions and "would apply" is audited once, not every tick.
    pub shadow: Shared<BTreeMap<DnsName, (DnsName, Generation)>>,
    /// Authoritative servers to watch after each applied change (`None` or no servers: no
    /// watch).
    pub propagation: Option<super::settings::PropagationSettings>,
    /// The newest generation the engine has issued per name, set as each command is queued:
    /// a change overtaken by a newer decision while it waited (a slow bus storing its intent) is
    /// not written, so the record never visits a target the engine has already left.
    pub issued: Issued,
    /// Where background watches (propagation) run, tracked with the rest of `run`'s tasks.
    pub tasks: super::tasks::Tasks,
    /// Serialises the intent bookkeeping of one name: settling an earlier leader's pending
    /// intent (after a read) and replacing it with a new change's intent.
    pub intent_locks: IntentLocks,
}

/// Locks the intent of a name (striped: a fixed number of locks, names hashed onto them), so
/// that settling an earlier leader's pending intent and a new change storing its own cannot
/// interleave: whichever goes second sees what the first stored, and the earlier intent is
/// settled — and audited — once. A change does not wait for a read (see [`Flights`]); the two
/// meet only here, for the few milliseconds of their bookkeeping.
#[derive(Clone)]
pub struct IntentLocks(Arc<[tokio::sync::Mutex<()>]>);

/// Stripes of [`IntentLocks`]: well above [`BOOKS_IN_FLIGHT`], so a group's intents rarely
/// wait for one another.
const INTENT_LOCK_STRIPES: usize = 1024;

impl Default for IntentLocks {
    fn default() -> Self {
        Self(
            (0..INTENT_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        )
    }
}

impl IntentLocks {
    /// Waits for `name`'s lock (`None` only for a set of no locks, which `default` never
    /// makes).
    async fn lock(&self, name: &DnsName) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let hash = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .hash_one(name.as_str());
        let stripe = hash.checked_rem(u64::try_from(self.0.len()).ok()?)?;
        Some(self.0.get(usize::try_from(stripe).ok()?)?.lock().await)
    }
}

/// When the applier reads on its own: the names and targets it knows, the reconcile interval
/// and the optional candidate check through a resolver.
pub struct Schedule {
    /// Every managed name.
    pub names: Vec<DnsName>,
    /// Every candidate target, sorted and deduplicated.
    pub targets: Vec<DnsName>,
    /// How often every record is read back.
    pub reconcile_every: std::time::Duration,
    /// The resolver and interval of the candidate check, when configured.
    pub candidate_check: Option<(std::net::SocketAddr, std::time::Duration)>,
}

/// An intent stored for a change, with what the write and the settlement need.
struct StoredIntent {
    /// The intent as stored (`pending`).
    book: RecordBook,
    /// Its revision in the state bucket, for the compare-and-set that settles it.
    revision: u64,
    /// The applied-generation entry as read before, for the compare-and-set that advances it.
    ns: Option<(RecordBook, u64)>,
}

/// A provider write's outcome as the audit trail says it: what the record held before and
/// holds after, the refusal or the error in its own words (not Rust's `Debug`).
fn outcome_words(outcome: &Result<ApplyOutcome, ProviderError>) -> String {
    let content = |s: &crate::provider::RecordState| {
        let holds = s.content.as_deref().unwrap_or("no CNAME");
        match &s.marker {
            Some(m) => format!("{holds} (marker {m})"),
            None => holds.to_owned(),
        }
    };
    match outcome {
        Ok(ApplyOutcome::Applied { before, after }) => format!(
            "applied: the record held {}, it now holds {}",
            content(before),
            content(after)
        ),
        Ok(ApplyOutcome::AlreadyInPlace { state }) => format!(
            "already in place: the record holds {}; nothing was written",
            content(state)
        ),
        Ok(ApplyOutcome::Refused(r)) => format!("refused: {r}; nothing was written"),
        Err(e) => format!("failed: {e}"),
    }
}

/// The audit event settling a write by its outcome (`applied`, `refused`, `superseded`, else
/// `failed`, as [`Applier::classify`] names it for the metrics).
fn settled(status: &str, s: Settlement) -> RuntimeEvent {
    match status {
        "applied" => RuntimeEvent::ApplyApplied(s),
        "refused" => RuntimeEvent::ApplyRefused(s),
        "superseded" => RuntimeEvent::ApplySuperseded(s),
        _ => RuntimeEvent::ApplyFailed(s),
    }
}

/// The report of a change that did not happen.
fn failed(cmd: &SetRecord, error: String, class: FailureClass, calls: CallStats) -> ProviderReport {
    ProviderReport::Failed {
        namespace: cmd.namespace.clone(),
        generation: cmd.generation,
        error,
        class,
        calls,
    }
}

/// The newest generation issued per name (see [`Applier::issued`]).
#[derive(Debug, Clone, Default)]
pub struct Issued(Arc<std::sync::Mutex<BTreeMap<String, Generation>>>);

impl Issued {
    /// Notes that `generation` was issued for `name`.
    pub fn note(&self, name: &str, generation: Generation) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let g = map.entry(name.to_owned()).or_default();
        *g = (*g).max(generation);
    }

    /// A generation newer than `generation` issued for `name` since.
    fn newer_than(&self, name: &str, generation: Generation) -> Option<Generation> {
        let map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(name).copied().filter(|g| *g > generation)
    }
}

/// The names of one read whose result is void: a change to them started while the read was
/// on its way, so what the read found may be older than what the change writes.
type Overtaken = Shared<std::collections::BTreeSet<DnsName>>;

/// What the run loop knows of the work in flight: the names a group of changes or a read is
/// working on and, per name being changed, the newest change waiting for it.
#[derive(Default)]
struct Flights {
    /// Names a running group is changing.
    busy: std::collections::BTreeSet<DnsName>,
    /// The newest change per busy name, started when that name's group ends.
    waiting: BTreeMap<DnsName, SetRecord>,
    /// Names a running read is reading, each with that read's [`Overtaken`] set. A change to
    /// one of them does not wait for the read: it starts at once and voids the read's result
    /// for that name.
    reading: BTreeMap<DnsName, Overtaken>,
}

/// A task of the run loop that ended, with the names it held.
enum Landed {
    /// A group of changes.
    Changes(Vec<DnsName>),
    /// A read.
    Read(Vec<DnsName>),
}

impl Applier {
    /// Applies the engine's record changes and reads the records back, until `stop`.
    ///
    /// Each message on `apply_rx` is the changes of one engine step; every message already
    /// queued is taken with it, and their changes go to the provider together
    /// ([`DnsProvider::apply_many`]: a few batch calls on a provider with a batch API). Each
    /// group runs in its own task, so a group stuck at the provider holds up no other name: a
    /// later change to a name not in flight starts at once in a group of its own, and a change
    /// to a name in flight waits for that flight (the newest one only: an older one is settled
    /// as overtaken). Every record is read at start, at each takeover (`refresh_rx`) and every
    /// `reconcile_every` (one [`DnsProvider::read_many`], skipping names in flight), and the
    /// candidates are checked through the resolver when configured.
    pub async fn run(
        self,
        schedule: Schedule,
        mut apply_rx: mpsc::Receiver<Vec<SetRecord>>,
        mut refresh_rx: mpsc::Receiver<()>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut reconcile = tokio::time::interval(schedule.reconcile_every);
        reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let check_every = schedule
            .candidate_check
            .map_or(std::time::Duration::from_secs(3600), |(_, every)| every);
        let mut candidates = tokio::time::interval(check_every);
        candidates.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Landed>();
        let mut flights = Flights::default();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = candidates.tick(), if schedule.candidate_check.is_some() => {
                    if let Some((resolver, _)) = schedule.candidate_check {
                        self.check_candidates(resolver, &schedule.targets).await;
                    }
                }
                group = apply_rx.recv() => match group {
                    Some(mut group) => {
                        while let Ok(more) = apply_rx.try_recv() {
                            group.extend(more);
                        }
                        self.start_group(group, &mut flights, &done_tx).await;
                    }
                    None => break,
                },
                Some(landed) = done_rx.recv() => match landed {
                    Landed::Changes(names) => {
                        let mut next = Vec::new();
                        for name in names {
                            flights.busy.remove(&name);
                            next.extend(flights.waiting.remove(&name));
                        }
                        self.start_group(next, &mut flights, &done_tx).await;
                    }
                    Landed::Read(names) => {
                        for name in names {
                            flights.reading.remove(&name);
                        }
                    }
                },
                Some(()) = refresh_rx.recv() => {
                    self.start_read(&schedule.names, " at takeover", &mut flights, &done_tx);
                }
                _ = reconcile.tick() => {
                    self.start_read(&schedule.names, "", &mut flights, &done_tx);
                }
            }
        }
    }

    /// Starts the changes of `group` whose names are free in one task; a change to a name
    /// being changed waits for it (the newest per name: an older one is settled here as
    /// overtaken). A name being read is free: the change starts at once and the read's result
    /// for it is dropped.
    async fn start_group(
        &self,
        group: Vec<SetRecord>,
        flights: &mut Flights,
        done: &mpsc::UnboundedSender<Landed>,
    ) {
        let mut launch: BTreeMap<DnsName, SetRecord> = BTreeMap::new();
        for cmd in group {
            let slot = if flights.busy.contains(&cmd.namespace) {
                &mut flights.waiting
            } else {
                &mut launch
            };
            let older = match slot.get(&cmd.namespace) {
                Some(held) if held.generation > cmd.generation => Some(cmd),
                _ => slot.insert(cmd.namespace.clone(), cmd),
            };
            if let Some(older) = older {
                // Audited as overtaken: a newer generation of its name was issued.
                self.skipped_before_start(&older).await;
            }
        }
        if launch.is_empty() {
            return;
        }
        let names: Vec<DnsName> = launch.keys().cloned().collect();
        for name in &names {
            if let Some(overtaken) = flights.reading.get(name) {
                locked(overtaken).insert(name.clone());
            }
        }
        flights.busy.extend(names.iter().cloned());
        let applier = self.clone();
        let done = done.clone();
        self.tasks.spawn(async move {
            applier.apply_group(launch.into_values().collect()).await;
            let _ = done.send(Landed::Changes(names));
        });
    }

    /// Reads every record of `names` neither being changed nor already being read, in one task
    /// (see [`Self::refresh_many`]).
    fn start_read(
        &self,
        names: &[DnsName],
        why: &'static str,
        flights: &mut Flights,
        done: &mpsc::UnboundedSender<Landed>,
    ) {
        let free: Vec<DnsName> = names
            .iter()
            .filter(|n| !flights.busy.contains(*n) && !flights.reading.contains_key(*n))
            .cloned()
            .collect();
        if free.is_empty() {
            return;
        }
        let overtaken = Overtaken::default();
        for name in &free {
            flights.reading.insert(name.clone(), overtaken.clone());
        }
        let applier = self.clone();
        let done = done.clone();
        self.tasks.spawn(async move {
            applier.read_records(&free, why, &overtaken).await;
            let _ = done.send(Landed::Read(free));
        });
    }

    fn audit(&self, epoch: Option<Epoch>, event: RuntimeEvent) {
        self.audit.record(self.audit_record(epoch, event));
    }

    /// Audits `event` and waits until the stream has stored it: `false` means the effect that
    /// follows must not happen (see the module docs, "audit before effect").
    async fn audit_stored(&self, epoch: Option<Epoch>, event: RuntimeEvent) -> bool {
        let stored = self
            .audit
            .record_stored(self.audit_record(epoch, event))
            .await;
        if !stored {
            self.metrics.applied("audit_not_stored");
        }
        stored
    }

    fn audit_record(&self, epoch: Option<Epoch>, event: RuntimeEvent) -> AuditRecord {
        AuditRecord {
            at: Utc::now(),
            controller: self.controller.clone(),
            role: Role::of_epoch(epoch),
            epoch,
            event: AuditEvent::Runtime(event),
            seq: None,
        }
    }

    async fn report(&self, r: ProviderReport) {
        let _ = self.reports.send(Input::Provider(r)).await;
    }

    /// Reads the current record of `name`, settles a pending intent an earlier leader left
    /// behind, and tells the engine what is there.
    pub async fn refresh(&self, name: &DnsName) -> Result<(), ProviderError> {
        let mut failed = self.refresh_many(std::slice::from_ref(name), "").await;
        failed.pop().map_or(Ok(()), Err)
    }

    /// Reads the records of `names` in one [`DnsProvider::read_many`] and, per name, settles a
    /// pending intent an earlier leader left behind and tells the engine what is there. A name
    /// that cannot be read is logged (`why`: at what occasion) and returned with its error; it
    /// holds up no other name.
    pub async fn refresh_many(&self, names: &[DnsName], why: &str) -> Vec<ProviderError> {
        self.read_records(names, why, &Overtaken::default()).await
    }

    /// [`Self::refresh_many`], dropping what was read of a name in `overtaken`: a change to it
    /// started while the read was on its way, so the content read may be older than the
    /// change's and must neither reach the engine (it would take our own earlier generation for
    /// a restore by hand) nor become the next compare-and-set's expected value. That change
    /// reports what the record holds.
    async fn read_records(
        &self,
        names: &[DnsName],
        why: &str,
        overtaken: &Overtaken,
    ) -> Vec<ProviderError> {
        use futures::StreamExt;
        let asked: Vec<String> = names.iter().map(DnsName::to_string).collect();
        let started = tokio::time::Instant::now();
        let states = self.provider.read_many(&asked).await;
        self.metrics.provider_call(
            self.provider.kind(),
            "read",
            states.iter().all(Result::is_ok),
            started.elapsed().as_secs_f64(),
        );
        futures::stream::iter(names.iter().cloned().zip(states))
            .map(|(name, state)| async move {
                let result = self.refreshed(&name, state, overtaken).await;
                if let Err(e) = &result {
                    tracing::warn!(namespace = %name, "cannot read the record{why}: {e}");
                }
                result.err()
            })
            .buffered(BOOKS_IN_FLIGHT)
            .filter_map(std::future::ready)
            .collect()
            .await
    }

    /// What a read of `name` found, taken up: the engine is told, a pending intent settled.
    async fn refreshed(
        &self,
        name: &DnsName,
        state: Result<RecordState, ProviderError>,
        overtaken: &Overtaken,
    ) -> Result<(), ProviderError> {
        let void = || locked(overtaken).contains(name);
        // What our books say each marker generation wrote, bounded: until the engine has the
        // record's content it writes nothing, so a state bucket slow to answer (a stream
        // electing its leader) must not hold the content back.
        let state = state?;
        let content = record_content(name, &state)?;
        let generation = state.marker.map(|m| Generation(m.generation));
        let book = match generation {
            Some(_) => Some(tokio::time::timeout(BOOK_WAIT, self.book(name, "ns")).await),
            None => None,
        };
        // The engine compares the books with the content to tell a hand edit (marker kept,
        // content changed) from our own write; without them it goes by what it accepted before.
        let written = match (generation, book) {
            (Some(g), Some(Ok(Ok(Some((book, _)))))) if book.generation == g => Some(book.target),
            (_, Some(Err(_))) => {
                tracing::warn!(namespace = %name, "the state bucket did not answer within {BOOK_WAIT:?}; the record is reported without our books");
                None
            }
            _ => None,
        };
        // No await between this check and the report's place in the engine's queue: a change
        // started after it reports after this read.
        if void() {
            tracing::debug!(namespace = %name, "a change started while the record was read; what the read found is dropped");
            return Ok(());
        }
        locked(&self.last_seen).insert(name.clone(), state.content.clone());
        self.report(ProviderReport::Current {
            namespace: name.clone(),
            target: content,
            generation,
            written,
        })
        .await;
        if !void() {
            self.settle(name, &state).await;
        }
        Ok(())
    }

    /// Settles the pending intent of an earlier leader (one that died or was fenced between
    /// recording the intent and marking it done): if the record carries that leader's marker for
    /// the intent's generation and target, the change landed and the intent is marked applied;
    /// otherwise it is marked superseded and the engine re-decides from what the record holds.
    /// Written with this leader's epoch, so the earlier leader, should it wake up, cannot
    /// overwrite the verdict. Only the acting leader settles; its own pending intents are in
    /// flight and left alone.
    async fn settle(&self, name: &DnsName, state: &crate::provider::RecordState) {
        let Some(epoch) = (self.acting)() else {
            return;
        };
        let _intent = self.intent_locks.lock(name).await;
        let (intent, revision) = match self.book(name, "intent").await {
            Ok(Some((intent, revision))) if intent.status == "pending" && intent.epoch < epoch => {
                (intent, revision)
            }
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(namespace = %name, "cannot read the pending intent: {e}");
                return;
            }
        };
        let landed = state.marker.is_some_and(|m| {
            Epoch(m.epoch) == intent.epoch && Generation(m.generation) == intent.generation
        }) && state.points_at(&intent.target);
        let status = if landed { "applied" } else { "superseded" };
        let note = if landed {
            format!(
                "the record carries epoch {}'s marker for generation {}: the change landed before that leader could mark it",
                intent.epoch, intent.generation
            )
        } else {
            format!(
                "the record shows {:?} with marker {:?}: epoch {}'s change to {} did not land; epoch {epoch} decides afresh",
                state.content,
                state.marker.map(|m| m.to_string()),
                intent.epoch,
                intent.target
            )
        };
        let settled = RecordBook {
            status: status.into(),
            epoch,
            at: Utc::now(),
            note: Some(note.clone()),
            ..intent.clone()
        };
        // Audit before effect: the settlement is in the stream before the state bucket says so.
        let settlement = IntentSettlement {
            namespace: name.clone(),
            target: intent.target.clone(),
            generation: intent.generation,
            intent_epoch: intent.epoch,
            why: note.clone(),
        };
        let event = if landed {
            RuntimeEvent::IntentApplied(settlement)
        } else {
            RuntimeEvent::IntentSuperseded(settlement)
        };
        if !self.audit_stored(Some(epoch), event).await {
            tracing::warn!(namespace = %name, "the audit stream did not store the settlement; the intent stays pending");
            return;
        }
        // Both writes are conditional on exactly what was read: a change of this leader's that
        // stored its own intent (or advanced `ns`) meanwhile is newer than this verdict and wins.
        if let Err(e) = self
            .put_once(name, "intent", &settled, Some(revision))
            .await
        {
            tracing::warn!(namespace = %name, "cannot settle the pending intent: {e}");
            return;
        }
        if landed {
            let ns = match self.book(name, "ns").await {
                Ok(Some((ns, revision)))
                    if ns.generation < intent.generation && ns.epoch <= epoch =>
                {
                    Some(Some(revision))
                }
                Ok(Some(_)) | Err(_) => None,
                Ok(None) => Some(None),
            };
            if let Some(revision) = ns
                && let Err(e) = self.put_once(name, "ns", &settled, revision).await
            {
                tracing::warn!(namespace = %name, "cannot record the applied generation: {e}");
            }
        }
        self.metrics.applied(if landed {
            "settled_applied"
        } else {
            "superseded"
        });
        tracing::info!(namespace = %name, intent_epoch = intent.epoch.get(), "pending intent {status}: {note}");
    }

    /// Applies one command (a group of one; see [`Self::apply_group`]).
    pub async fn apply(&self, cmd: SetRecord) {
        self.apply_group(vec![cmd]).await;
    }

    /// Applies the changes of one group (at most one per name); never panics, reports every
    /// outcome to the engine. Per change, in order: checks that it is still ours to do, stores
    /// the intent (state bucket and audit trail, both before the write) and re-checks the lease
    /// and the generation; then every change of an epoch goes to the provider in one
    /// [`DnsProvider::apply_many`] under that epoch's fence; then, per change, the settlement
    /// is audited and recorded before it is reported. The bookkeeping of different names runs
    /// side by side ([`BOOKS_IN_FLIGHT`] at a time).
    pub async fn apply_group(&self, group: Vec<SetRecord>) {
        use futures::StreamExt;
        let mut todo = Vec::with_capacity(group.len());
        for cmd in group {
            if !self.skipped_before_start(&cmd).await {
                todo.push(cmd);
            }
        }
        let ready: Vec<(SetRecord, StoredIntent)> = futures::stream::iter(todo)
            .map(|cmd| async move {
                let intent = self.store_intent(&cmd).await?;
                if self.skipped_before_write(&cmd, &intent).await {
                    return None;
                }
                Some((cmd, intent))
            })
            .buffered(BOOKS_IN_FLIGHT)
            .filter_map(std::future::ready)
            .collect()
            .await;
        // One provider call per epoch (a group spans two only across a change of leader).
        let mut by_epoch: BTreeMap<Epoch, Vec<(SetRecord, StoredIntent)>> = BTreeMap::new();
        for (cmd, intent) in ready {
            by_epoch.entry(cmd.epoch).or_default().push((cmd, intent));
        }
        for (epoch, changes) in by_epoch {
            if self.provider.batch_limit() <= 1 {
                // Name by name: each change settles as soon as its own call ends, so a name
                // stuck at the provider holds up no other name of the group.
                futures::stream::iter(changes)
                    .map(|(cmd, intent)| async move {
                        let (mut outcomes, calls) = self.write(epoch, &[&cmd]).await;
                        let outcome = outcomes.pop().unwrap_or_else(|| {
                            Err(ProviderError::Transient(
                                "the provider gave no outcome".into(),
                            ))
                        });
                        self.settle_write(cmd, intent, outcome, calls).await;
                    })
                    .buffer_unordered(crate::provider::ONE_BY_ONE_IN_FLIGHT)
                    .collect::<Vec<()>>()
                    .await;
                continue;
            }
            let cmds: Vec<&SetRecord> = changes.iter().map(|(c, _)| c).collect();
            let (outcomes, calls) = self.write(epoch, &cmds).await;
            futures::stream::iter(changes.into_iter().zip(outcomes))
                .map(|((cmd, intent), outcome)| self.settle_write(cmd, intent, outcome, calls))
                .buffered(BOOKS_IN_FLIGHT)
                .collect::<Vec<()>>()
                .await;
        }
    }

    /// After the provider call: audits the settlement, marks the intent and the applied
    /// generation, watches propagation and reports to the engine.
    async fn settle_write(
        &self,
        cmd: SetRecord,
        intent: StoredIntent,
        outcome: Result<ApplyOutcome, ProviderError>,
        calls: CallStats,
    ) {
        let name = cmd.namespace.clone();
        let (status, report) = self.classify(&cmd, &outcome, calls).await;
        self.metrics.applied(status);
        // Audit before effect: the settlement is stored before the state bucket marks the intent
        // done; if it is not, the intent stays pending for a later leader to settle.
        let settlement = settled(
            status,
            Settlement {
                namespace: name.clone(),
                target: Some(cmd.target.clone()),
                generation: cmd.generation,
                outcome: Some(outcome_words(&outcome)),
                why: None,
            },
        );
        let settlement_stored = self.audit_stored(Some(cmd.epoch), settlement).await;
        let done = RecordBook {
            status: status.into(),
            at: Utc::now(),
            ..intent.book.clone()
        };
        // This applier just read `ns` and wrote the intent: their revisions save two reads.
        if !settlement_stored {
            tracing::warn!(namespace = %name, "the audit stream did not store apply_{status}; the intent stays pending");
        } else {
            self.mark_intent(&name, &done, intent.book, intent.revision)
                .await;
        }
        if settlement_stored
            && status == "applied"
            && let Err(e) = self.put_over(&name, "ns", &done, Some(intent.ns)).await
        {
            tracing::warn!(namespace = %name, "cannot record applied generation: {e}");
        }
        if let Ok(ApplyOutcome::Applied { .. }) = &outcome {
            self.watch_propagation(&name, &cmd.target, cmd.ttl_secs);
        }
        self.report(report).await;
    }

    /// A change that is not ours to start: this controller does not act in its epoch, a newer
    /// generation was issued while it queued, or this is a dry run (audited as "would apply").
    /// `true` when it was handled here.
    async fn skipped_before_start(&self, cmd: &SetRecord) -> bool {
        let name = cmd.namespace.clone();
        if (self.acting)() != Some(cmd.epoch) {
            self.metrics.applied("not_acting");
            self.audit(
                None,
                RuntimeEvent::ApplySkipped(Settlement {
                    namespace: name,
                    target: None,
                    generation: cmd.generation,
                    outcome: None,
                    why: Some("not the acting leader for this epoch".into()),
                }),
            );
            return true;
        }
        if let Some(newer) = self.issued.newer_than(&name, cmd.generation) {
            self.metrics.applied("superseded");
            self.audit(
                Some(cmd.epoch),
                RuntimeEvent::ApplySkipped(Settlement {
                    namespace: name,
                    target: Some(cmd.target.clone()),
                    generation: cmd.generation,
                    outcome: None,
                    why: Some(format!(
                        "overtaken by generation {newer} before it was started"
                    )),
                }),
            );
            return true;
        }
        if self.dry_run {
            self.metrics.applied("dry_run");
            self.audit(
                Some(cmd.epoch),
                RuntimeEvent::WouldApply {
                    namespace: name.clone(),
                    target: cmd.target.clone(),
                    generation: cmd.generation,
                    reason: cmd.reason,
                },
            );
            locked(&self.shadow).insert(name.clone(), (cmd.target.clone(), cmd.generation));
            self.report(ProviderReport::Applied {
                namespace: name,
                generation: cmd.generation,
                calls: CallStats::default(),
            })
            .await;
            return true;
        }
        false
    }

    /// Stores the intent in the state bucket and the audit stream (both before any provider
    /// write); `None` when the change must not go on (already applied, a store refused, the
    /// audit stream did not store it), which is reported or audited here.
    async fn store_intent(&self, cmd: &SetRecord) -> Option<StoredIntent> {
        let name = cmd.namespace.clone();
        // Held until the new intent is stored: a settlement of the earlier one after a read
        // goes wholly before or after (see `IntentLocks`).
        let _intent = self.intent_locks.lock(&name).await;
        // Both entries at once: each read is a round trip to the bus on the decision's path.
        let (ns, old_intent) = tokio::join!(self.book(&name, "ns"), self.book(&name, "intent"));
        let ns = match ns {
            Ok(Some((book, _))) if book.generation >= cmd.generation => {
                self.metrics.applied("stale_generation");
                self.audit(
                    Some(cmd.epoch),
                    RuntimeEvent::ApplyRefused(Settlement {
                        namespace: name,
                        target: None,
                        generation: cmd.generation,
                        outcome: None,
                        why: Some(format!("generation {} already applied", book.generation)),
                    }),
                );
                return None;
            }
            Ok(ns) => ns,
            Err(e) => {
                self.report(failed(
                    cmd,
                    format!("state store: {e}"),
                    FailureClass::Transient,
                    CallStats::default(),
                ))
                .await;
                return None;
            }
        };
        if let Ok(Some((old, _))) = &old_intent
            && old.status == "pending"
            && old.epoch < cmd.epoch
        {
            // A new decision replaces an earlier leader's unfinished one; the provider's
            // compare-and-set below works from what the record really holds.
            self.metrics.applied("superseded");
            self.audit(
                Some(cmd.epoch),
                RuntimeEvent::IntentSuperseded(IntentSettlement {
                    namespace: name.clone(),
                    target: old.target.clone(),
                    generation: old.generation,
                    intent_epoch: old.epoch,
                    why: format!(
                        "replaced by epoch {}'s decision (generation {}, target {})",
                        cmd.epoch, cmd.generation, cmd.target
                    ),
                }),
            );
        }
        let book = RecordBook {
            generation: cmd.generation,
            target: cmd.target.clone(),
            epoch: cmd.epoch,
            status: "pending".into(),
            at: Utc::now(),
            note: None,
        };
        // The intent goes to the state bucket and to the audit stream at once (one round trip
        // instead of two on the decision's path); both must be stored before the provider write.
        let intent_record = RuntimeEvent::Intent {
            namespace: name.clone(),
            target: cmd.target.clone(),
            generation: cmd.generation,
            reason: cmd.reason,
            evidence: cmd.evidence.clone(),
        };
        let (put, stored) = tokio::join!(
            self.put_over(&name, "intent", &book, old_intent.ok()),
            self.audit_stored(Some(cmd.epoch), intent_record)
        );
        let revision = match put {
            Ok(revision) => revision,
            Err(e) => {
                self.metrics.applied("intent_refused");
                // Queued after the intent record (stored or still on its way), so the audit
                // trail settles it: nothing was written.
                self.audit(
                    Some(cmd.epoch),
                    RuntimeEvent::ApplyRefused(Settlement {
                        namespace: name,
                        target: Some(cmd.target.clone()),
                        generation: cmd.generation,
                        outcome: Some(format!(
                            "the intent could not be recorded in the state bucket: {e}; nothing was written"
                        )),
                        why: None,
                    }),
                );
                self.report(failed(
                    cmd,
                    e,
                    FailureClass::Transient,
                    CallStats::default(),
                ))
                .await;
                return None;
            }
        };
        // Audit before effect: no provider write the audit trail might not show.
        if !stored {
            let why =
                "the audit stream did not store the intent record in time; nothing was written";
            // Queued after the intent, so it settles the intent if that is stored later.
            self.audit(
                Some(cmd.epoch),
                RuntimeEvent::ApplyFailed(Settlement {
                    namespace: name,
                    target: Some(cmd.target.clone()),
                    generation: cmd.generation,
                    outcome: Some(why.to_owned()),
                    why: None,
                }),
            );
            self.report(failed(
                cmd,
                why.to_owned(),
                FailureClass::Transient,
                CallStats::default(),
            ))
            .await;
            return None;
        }
        Some(StoredIntent { book, revision, ns })
    }

    /// Right before the write: the lease may have lapsed, or the engine decided again while the
    /// intent was being stored (that newer change, queued behind this one, is the one to write;
    /// the intent is settled as superseded, audited first). `true` when nothing is written.
    async fn skipped_before_write(&self, cmd: &SetRecord, intent: &StoredIntent) -> bool {
        let name = &cmd.namespace;
        if (self.acting)() != Some(cmd.epoch) {
            self.metrics.applied("not_acting");
            self.audit(
                None,
                RuntimeEvent::ApplySkipped(Settlement {
                    namespace: name.clone(),
                    target: None,
                    generation: cmd.generation,
                    outcome: None,
                    why: Some("lease lost before the write".into()),
                }),
            );
            return true;
        }
        let Some(newer) = self.issued.newer_than(name, cmd.generation) else {
            return false;
        };
        self.metrics.applied("superseded");
        let why = format!(
            "overtaken by generation {newer} while its intent was being stored; nothing was written"
        );
        let event = RuntimeEvent::ApplySuperseded(Settlement {
            namespace: name.clone(),
            target: Some(cmd.target.clone()),
            generation: cmd.generation,
            outcome: Some(why.clone()),
            why: None,
        });
        if self.audit_stored(Some(cmd.epoch), event).await {
            let done = RecordBook {
                status: "superseded".into(),
                at: Utc::now(),
                note: Some(why),
                ..intent.book.clone()
            };
            self.mark_intent(name, &done, intent.book.clone(), intent.revision)
                .await;
        }
        true
    }

    /// The provider write of `cmds`, all of `epoch`, in one [`DnsProvider::apply_many`] fenced
    /// on that epoch: compare-and-set on the content last read. The calls spent are the
    /// group's, reported with each change.
    async fn write(
        &self,
        epoch: Epoch,
        cmds: &[&SetRecord],
    ) -> (Vec<Result<ApplyOutcome, ProviderError>>, CallStats) {
        let stats_before = self.provider.stats();
        let started = tokio::time::Instant::now();
        let changes: Vec<Change> = {
            let seen = locked(&self.last_seen);
            cmds.iter()
                .map(|cmd| Change {
                    name: cmd.namespace.to_string(),
                    target: cmd.target.to_string(),
                    ttl: u32::try_from(cmd.ttl_secs).ok(),
                    expected: seen.get(&cmd.namespace).cloned().flatten(),
                    epoch: cmd.epoch.get(),
                    generation: cmd.generation.get(),
                    adopt_unmarked: self
                        .adopt_unmarked
                        .get(&cmd.namespace)
                        .copied()
                        .unwrap_or(false),
                })
                .collect()
        };
        let acting = self.acting.clone();
        let fence = crate::provider::Fence::new(move || acting() == Some(epoch));
        let outcomes = crate::provider::FENCE
            .scope(fence, self.provider.apply_many(&changes))
            .await;
        self.metrics.provider_call(
            self.provider.kind(),
            "apply",
            outcomes.iter().all(Result::is_ok),
            started.elapsed().as_secs_f64(),
        );
        let spent = self.provider.stats().since(&stats_before);
        let calls = CallStats {
            calls: u32::try_from(spent.calls).unwrap_or(u32::MAX),
            retries: u32::try_from(spent.retries).unwrap_or(u32::MAX),
            rate_limited: u32::try_from(spent.rate_limited).unwrap_or(u32::MAX),
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        (outcomes, calls)
    }

    /// What the write's outcome means: its status word and the report for the engine. A
    /// refusal that read the record also tells the engine what the record holds.
    async fn classify(
        &self,
        cmd: &SetRecord,
        outcome: &Result<ApplyOutcome, crate::provider::ProviderError>,
        calls: CallStats,
    ) -> (&'static str, ProviderReport) {
        let name = &cmd.namespace;
        match outcome {
            Ok(ApplyOutcome::Applied { after, .. })
            | Ok(ApplyOutcome::AlreadyInPlace { state: after }) => {
                locked(&self.last_seen).insert(name.clone(), after.content.clone());
                (
                    "applied",
                    ProviderReport::Applied {
                        namespace: name.clone(),
                        generation: cmd.generation,
                        calls,
                    },
                )
            }
            Ok(ApplyOutcome::Refused(r)) => {
                if let Refusal::Drift { found } | Refusal::NotOurs { found } = r {
                    locked(&self.last_seen).insert(name.clone(), found.content.clone());
                    match record_content(name, found) {
                        Ok(target) => {
                            self.report(ProviderReport::Current {
                                namespace: name.clone(),
                                target,
                                generation: found.marker.map(|m| Generation(m.generation)),
                                written: None,
                            })
                            .await;
                        }
                        Err(e) => tracing::warn!(namespace = %name, "{e}"),
                    }
                }
                (
                    "refused",
                    failed(cmd, r.to_string(), refusal_class(r), calls),
                )
            }
            Err(e) => ("failed", failed(cmd, e.to_string(), error_class(e), calls)),
        }
    }

    /// Watches the zone's authoritative servers in the background until all answer `target`
    /// (or the deadline, `alert_after_ttls` × TTL, passes) and reports the outcome to the engine,
    /// which audits it and decides whether to alert.
    fn watch_propagation(&self, name: &DnsName, target: &DnsName, ttl_secs: u64) {
        let Some(p) = self.propagation.clone().filter(|p| !p.servers.is_empty()) else {
            return;
        };
        let (name, target) = (name.clone(), target.clone());
        let reports = self.reports.clone();
        self.tasks.spawn(async move {
            let options = crate::provider::propagation::WatchOptions {
                deadline: p.deadline(ttl_secs),
                poll_interval: p.poll_interval,
                ..Default::default()
            };
            let report = match crate::provider::propagation::watch(
                &name, &target, &p.servers, options,
            )
            .await
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(namespace = %name, "propagation watch failed: {e}");
                    return;
                }
            };
            let laggards: Vec<String> = report
                .laggards()
                .map(|s| {
                    format!(
                        "{} (last answer {:?}{})",
                        s.server,
                        s.last_answer,
                        s.last_error
                            .as_deref()
                            .map(|e| format!(", {e}"))
                            .unwrap_or_default()
                    )
                })
                .collect();
            let elapsed = report.converged_after().unwrap_or(report.elapsed);
            let _ = reports
                .send(Input::Provider(ProviderReport::Propagation {
                    namespace: name,
                    target,
                    converged: report.converged(),
                    elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                    laggards,
                }))
                .await;
        });
    }

    /// Checks that every candidate target resolves through `resolver` and reports each result to
    /// the engine, which alerts once per target that does not (a failover there would send
    /// clients nowhere). Only the acting leader checks.
    pub async fn check_candidates(&self, resolver: std::net::SocketAddr, targets: &[DnsName]) {
        if (self.acting)().is_none() {
            return;
        }
        let names: Vec<String> = targets.iter().map(DnsName::to_string).collect();
        let checks = crate::provider::propagation::check_targets(
            resolver,
            &names,
            std::time::Duration::from_secs(3),
        )
        .await;
        // One check per target, in order.
        for (target, c) in targets.iter().zip(checks) {
            self.report(ProviderReport::TargetCheck {
                problem: c
                    .problem
                    .as_ref()
                    .map(|p| format!("{p} (asked {resolver})")),
                target: target.clone(),
            })
            .await;
        }
    }

    async fn book(&self, name: &str, prefix: &str) -> Result<Option<(RecordBook, u64)>, String> {
        let Some(store) = &self.store else {
            return Ok(None);
        };
        let key = format!("{prefix}.{name}");
        match store.entry(&key).await {
            Ok(Some(e)) => serde_json::from_slice::<RecordBook>(&e.value)
                .map(|b| Some((b, e.revision)))
                .map_err(|err| format!("{key} holds unreadable JSON: {err}")),
            Ok(None) => Ok(None),
            Err(e) => Err(format!("reading {key}: {e}")),
        }
    }

    /// Marks this applier's own pending intent as `done` says, starting from the revision it
    /// wrote the intent at.
    async fn mark_intent(&self, name: &str, done: &RecordBook, pending: RecordBook, revision: u64) {
        if let Err(e) = self
            .put_over(name, "intent", done, Some(Some((pending, revision))))
            .await
        {
            tracing::warn!(namespace = %name, "cannot mark intent {}: {e}", done.status);
        }
    }

    /// Writes `prefix.name` once, if it is still at `revision` (`None`: still absent); no
    /// second attempt, so a concurrent writer's newer entry is never overwritten.
    async fn put_once(
        &self,
        name: &str,
        prefix: &str,
        value: &RecordBook,
        revision: Option<u64>,
    ) -> Result<u64, String> {
        let Some(store) = &self.store else {
            return Ok(0);
        };
        let key = format!("{prefix}.{name}");
        let body = serde_json::to_vec(value).map_err(|e| e.to_string())?;
        match revision {
            Some(revision) => store.update(&key, body, revision).await,
            None => store.create(&key, body).await,
        }
        .map_err(|e| format!("{key} changed since it was read ({e}); left as it is"))
    }

    /// Compare-and-set `prefix.name`, refused when the stored value carries a newer epoch,
    /// starting from `known`, what the key held when this applier last read or wrote it
    /// (`Some(None)`: absent; `None`: read it first). The write is conditional on that
    /// revision, so a stale `known` costs one failed attempt and a fresh read, never a lost
    /// update. Returns the new revision (0 without a store).
    async fn put_over(
        &self,
        name: &str,
        prefix: &str,
        value: &RecordBook,
        mut known: Option<Option<(RecordBook, u64)>>,
    ) -> Result<u64, String> {
        let Some(store) = &self.store else {
            return Ok(0);
        };
        let key = format!("{prefix}.{name}");
        let body = serde_json::to_vec(value).map_err(|e| e.to_string())?;
        for _ in 0..3 + usize::from(known.is_some()) {
            let current = match known.take() {
                Some(current) => current,
                None => self.book(name, prefix).await?,
            };
            let result = match current {
                Some((book, _)) if book.epoch > value.epoch => {
                    return Err(format!("{key} was written by newer epoch {}", book.epoch));
                }
                Some((_, revision)) => store.update(&key, body.clone(), revision).await,
                None => store.create(&key, body.clone()).await,
            };
            if let Ok(revision) = result {
                return Ok(revision);
            }
        }
        Err(format!(
            "{key}: compare-and-set kept losing to concurrent writers"
        ))
    }
}

/// The engine's failure class of a provider refusal.
fn refusal_class(r: &Refusal) -> FailureClass {
    match r {
        Refusal::NewerEpoch { .. } => FailureClass::NewerEpoch,
        Refusal::OlderGeneration { .. } => FailureClass::OlderGeneration,
        Refusal::Drift { .. } => FailureClass::Drift,
        Refusal::NotOurs { .. } => FailureClass::Unmarked,
        Refusal::Missing => FailureClass::Missing,
        Refusal::LeaseLost => FailureClass::LeaseLost,
    }
}

/// The engine's failure class of a provider error.
fn error_class(e: &ProviderError) -> FailureClass {
    match e {
        ProviderError::Auth(_) => FailureClass::Auth,
        ProviderError::RateLimited { retry_after } => FailureClass::RateLimited {
            retry_after_ms: retry_after.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        },
        ProviderError::Transient(_) => FailureClass::Transient,
        ProviderError::Rejected(_) => FailureClass::Rejected,
        ProviderError::Budget => FailureClass::Budget,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::sync::Notify;

    use super::*;
    use crate::engine::{Evidence, Rule};
    use crate::ha::kv_store::MemoryKv;
    use crate::provider::memory::MemoryProvider;

    const NAME: &str = "mail.example.com";

    #[test]
    fn record_content_is_read_as_a_lowercase_name_and_a_non_name_is_a_read_error() {
        let name: DnsName = NAME.parse().unwrap();
        let holding = |c: Option<&str>| RecordState {
            content: c.map(str::to_owned),
            ..RecordState::default()
        };
        assert_eq!(record_content(&name, &holding(None)), Ok(None));
        assert_eq!(
            record_content(&name, &holding(Some("Mail-Site2.Example.com."))),
            Ok(Some("mail-site2.example.com".parse().unwrap()))
        );
        let e = record_content(&name, &holding(Some("not a name"))).unwrap_err();
        assert!(!e.is_retryable(), "{e}");
        assert!(
            e.to_string().contains(NAME) && e.to_string().contains("\"not a name\""),
            "{e}"
        );
    }

    fn set(target: &str, generation: u64) -> SetRecord {
        SetRecord {
            namespace: NAME.parse().unwrap(),
            target: target.parse().unwrap(),
            ttl_secs: 60,
            reason: Rule::MoveAwayFromDown,
            generation: Generation(generation),
            epoch: Epoch(1),
            evidence: Evidence {
                rule: Rule::MoveAwayFromDown,
                at: Utc::now(),
                note: String::new(),
                sites: Default::default(),
                failback_eligible_at: None,
            },
        }
    }

    /// An applier on a memory provider whose audit stream notes the kind of every record it is
    /// sent, then stores nothing until `open` is notified.
    fn applier(
        provider: MemoryProvider,
        open: Arc<Notify>,
        kinds: Arc<Mutex<Vec<String>>>,
    ) -> (Applier, mpsc::Receiver<Input>, CancellationToken) {
        let stop = CancellationToken::new();
        let publish = move |_n: u64, body: axum::body::Bytes| {
            let open = open.clone();
            let record: AuditRecord = serde_json::from_slice(&body).unwrap();
            let kind = record.event.kind();
            kinds.lock().unwrap_or_else(|e| e.into_inner()).push(kind);
            std::future::ready(Box::pin(async move {
                open.notified().await;
                open.notify_one();
                true
            }) as super::super::audit::Ack)
        };
        let metrics = Arc::new(Metrics::new());
        let (audit, _task) = super::super::audit::start(
            publish,
            metrics.clone(),
            stop.clone(),
            super::super::audit::QUEUE_BASE,
        );
        let (reports, rx) = mpsc::channel(16);
        let applier = Applier {
            provider: Arc::new(provider),
            store: None,
            acting: Arc::new(|| Some(Epoch(1))),
            dry_run: false,
            adopt_unmarked: Arc::default(),
            audit,
            controller: "ctl-a".into(),
            metrics,
            reports,
            last_seen: Arc::default(),
            shadow: Arc::default(),
            propagation: None,
            issued: Issued::default(),
            tasks: Default::default(),
            intent_locks: IntentLocks::default(),
        };
        (applier, rx, stop)
    }

    use tokio_util::sync::CancellationToken;

    /// A provider holding our record at mail-rr, a closed stream gate and an empty kind log.
    fn seeded() -> (MemoryProvider, Arc<Notify>, Arc<Mutex<Vec<String>>>) {
        let provider = MemoryProvider::default();
        provider.insert(
            NAME,
            "mail-rr.example.com",
            Some("sitewarden epoch=1 gen=0"),
        );
        (
            provider,
            Arc::new(Notify::new()),
            Arc::new(Mutex::new(Vec::new())),
        )
    }

    /// Waits until the stream has been sent `n` records.
    async fn arrived(kinds: &Mutex<Vec<String>>, n: usize) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while kinds.lock().unwrap_or_else(|e| e.into_inner()).len() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "fewer than {n} records sent"
            );
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_change_overtaken_while_its_intent_is_stored_is_not_written() {
        let (provider, open, kinds) = seeded();
        let (applier, _reports, _stop) = applier(provider.clone(), open.clone(), kinds.clone());
        let issued = applier.issued.clone();
        issued.note(NAME, Generation(1));
        let first = set("mail-site1.example.com", 1);
        let apply = tokio::spawn(async move {
            applier.apply(first).await;
            applier
        });
        // The stream is slow to store the intent; meanwhile the engine decides again.
        arrived(&kinds, 1).await;
        issued.note(NAME, Generation(2));
        open.notify_one();
        let applier = apply.await.expect("the apply task");
        assert_eq!(provider.writes(), 0, "the overtaken change was written");
        let stored = kinds.lock().unwrap_or_else(|e| e.into_inner()).clone();
        assert_eq!(stored, ["intent", "apply_superseded"]);
        // The newer change goes through.
        applier.apply(set("mail-site2.example.com", 2)).await;
        assert_eq!(provider.writes(), 1);
        let record = provider.record(NAME).expect("the record");
        assert_eq!(record.content.as_deref(), Some("mail-site2.example.com"));
    }

    #[tokio::test]
    async fn a_change_overtaken_before_it_starts_is_skipped_and_audited() {
        let (provider, open, kinds) = seeded();
        open.notify_one();
        let (applier, _reports, _stop) = applier(provider.clone(), open, kinds.clone());
        applier.issued.note(NAME, Generation(2));
        applier.apply(set("mail-site1.example.com", 1)).await;
        assert_eq!(provider.writes(), 0);
        arrived(&kinds, 1).await;
        assert_eq!(
            *kinds.lock().unwrap_or_else(|e| e.into_inner()),
            ["apply_skipped"]
        );
    }

    /// An applier whose audit stream stores every record at once, over `kv` as its state bucket.
    fn applier_over(
        provider: MemoryProvider,
        kv: Arc<MemoryKv>,
    ) -> (
        Applier,
        Arc<Mutex<Vec<String>>>,
        mpsc::Receiver<Input>,
        CancellationToken,
    ) {
        let open = Arc::new(Notify::new());
        open.notify_one();
        let kinds = Arc::new(Mutex::new(Vec::new()));
        let (mut applier, reports, stop) = applier(provider, open, kinds.clone());
        applier.store = Some(kv);
        (applier, kinds, reports, stop)
    }

    /// A bookkeeping entry as the state bucket holds it.
    fn book(target: &str, generation: u64, epoch: u64, status: &str) -> Vec<u8> {
        let book = RecordBook {
            generation: Generation(generation),
            target: target.parse().unwrap(),
            epoch: Epoch(epoch),
            status: status.into(),
            at: Utc::now(),
            note: None,
        };
        serde_json::to_vec(&book).unwrap()
    }

    fn read_book(kv: &MemoryKv, key: &str) -> RecordBook {
        let entry = kv
            .get(key)
            .unwrap_or_else(|| panic!("{key} is in the bucket"));
        serde_json::from_slice(&entry.value).unwrap()
    }

    async fn kinds_after(kinds: &Mutex<Vec<String>>, n: usize) -> Vec<String> {
        arrived(kinds, n).await;
        kinds.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    #[tokio::test]
    async fn an_applied_change_settles_its_intent_and_records_its_generation() {
        let (provider, _, _) = seeded();
        let kv = Arc::new(MemoryKv::default());
        let (applier, kinds, mut reports, _stop) = applier_over(provider.clone(), kv.clone());
        applier.apply(set("mail-site2.example.com", 1)).await;
        assert_eq!(provider.writes(), 1);
        let record = provider.record(NAME).expect("the record");
        assert_eq!(record.content.as_deref(), Some("mail-site2.example.com"));
        let intent = read_book(&kv, &format!("intent.{NAME}"));
        assert_eq!(
            (intent.status.as_str(), intent.generation, intent.epoch),
            ("applied", Generation(1), Epoch(1))
        );
        let ns = read_book(&kv, &format!("ns.{NAME}"));
        assert_eq!(
            (ns.target.as_str(), ns.generation),
            ("mail-site2.example.com", Generation(1))
        );
        assert_eq!(kinds_after(&kinds, 2).await, ["intent", "apply_applied"]);
        let report = reports.try_recv().expect("a report to the engine");
        assert!(
            matches!(
                report,
                Input::Provider(ProviderReport::Applied {
                    generation: Generation(1),
                    ..
                })
            ),
            "{report:?}"
        );
    }

    #[tokio::test]
    async fn a_generation_already_applied_is_refused_before_anything_is_written() {
        let (provider, _, _) = seeded();
        let kv = Arc::new(MemoryKv::default());
        kv.put(
            &format!("ns.{NAME}"),
            &book("mail-site1.example.com", 5, 1, "applied"),
        );
        let (applier, kinds, _reports, _stop) = applier_over(provider.clone(), kv.clone());
        applier.apply(set("mail-site2.example.com", 3)).await;
        assert_eq!(
            provider.writes(),
            0,
            "an older generation reached the provider"
        );
        assert_eq!(kv.get(&format!("intent.{NAME}")), None, "no intent for it");
        assert_eq!(kinds_after(&kinds, 1).await, ["apply_refused"]);
    }

    #[tokio::test]
    async fn an_older_leaders_pending_intent_is_superseded_by_the_new_decision() {
        let (provider, _, _) = seeded();
        let kv = Arc::new(MemoryKv::default());
        kv.put(
            &format!("intent.{NAME}"),
            &book("mail-site1.example.com", 1, 0, "pending"),
        );
        let (applier, kinds, _reports, _stop) = applier_over(provider.clone(), kv.clone());
        applier.apply(set("mail-site2.example.com", 2)).await;
        assert_eq!(provider.writes(), 1);
        let intent = read_book(&kv, &format!("intent.{NAME}"));
        assert_eq!(
            (intent.status.as_str(), intent.generation, intent.epoch),
            ("applied", Generation(2), Epoch(1))
        );
        assert_eq!(
            kinds_after(&kinds, 3).await,
            ["intent_superseded", "intent", "apply_applied"]
        );
    }

    #[tokio::test]
    async fn an_earlier_leaders_intent_met_by_a_read_and_a_change_at_once_is_settled_once() {
        let (provider, open, kinds) = seeded();
        let kv = Arc::new(MemoryKv::default());
        kv.put(
            &format!("intent.{NAME}"),
            &book("mail-site1.example.com", 1, 0, "pending"),
        );
        let (mut applier, mut reports, _stop) =
            applier(provider.clone(), open.clone(), kinds.clone());
        applier.store = Some(kv.clone());
        let drain = tokio::spawn(async move { while reports.recv().await.is_some() {} });
        // A read finds the earlier leader's pending intent and settles it: its audit record is
        // sent, and the stream holds the acknowledgement back.
        let reader = applier.clone();
        let read = tokio::spawn(async move { reader.refresh(&NAME.parse().unwrap()).await });
        arrived(&kinds, 1).await;
        // Meanwhile a change to the same name starts (a change does not wait for a read) and
        // gets every chance to run before the stream answers.
        let changer = applier.clone();
        let change = tokio::spawn(async move {
            changer.apply(set("mail-site2.example.com", 2)).await;
        });
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        open.notify_one();
        read.await.unwrap().unwrap();
        change.await.unwrap();
        let kinds = kinds_after(&kinds, 3).await;
        assert_eq!(
            kinds.iter().filter(|k| *k == "intent_superseded").count(),
            1,
            "settled once: {kinds:?}"
        );
        let intent = read_book(&kv, &format!("intent.{NAME}"));
        assert_eq!(
            (intent.status.as_str(), intent.generation, intent.epoch),
            ("applied", Generation(2), Epoch(1))
        );
        assert_eq!(provider.writes(), 1);
        drain.abort();
    }

    #[tokio::test]
    async fn bookkeeping_of_a_newer_epoch_stops_the_change_before_the_provider() {
        let (provider, _, _) = seeded();
        let kv = Arc::new(MemoryKv::default());
        // A newer leader already recorded an intent for this name: this one is fenced out.
        kv.put(
            &format!("intent.{NAME}"),
            &book("mail-site1.example.com", 9, 7, "applied"),
        );
        let (applier, kinds, mut reports, _stop) = applier_over(provider.clone(), kv.clone());
        applier.apply(set("mail-site2.example.com", 2)).await;
        assert_eq!(provider.writes(), 0, "a fenced-out leader wrote the record");
        assert_eq!(
            read_book(&kv, &format!("intent.{NAME}")).epoch,
            Epoch(7),
            "its intent is kept"
        );
        let stored = kinds_after(&kinds, 2).await;
        assert_eq!(stored, ["intent", "apply_refused"]);
        let report = reports.try_recv().expect("a report to the engine");
        assert!(
            matches!(&report, Input::Provider(ProviderReport::Failed { error, .. }) if error.contains("newer epoch 7")),
            "{report:?}"
        );
    }

    #[tokio::test]
    async fn a_lease_lost_while_the_intent_was_stored_writes_nothing_and_leaves_it_pending() {
        let (provider, _, _) = seeded();
        let kv = Arc::new(MemoryKv::default());
        let (mut applier, kinds, _reports, _stop) = applier_over(provider.clone(), kv.clone());
        // Acting for the first check only: the lease lapses while the intent is stored.
        let checks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        applier.acting = Arc::new(move || {
            (checks.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0).then_some(Epoch(1))
        });
        applier.apply(set("mail-site2.example.com", 1)).await;
        assert_eq!(provider.writes(), 0);
        let intent = read_book(&kv, &format!("intent.{NAME}"));
        assert_eq!(intent.status, "pending", "a later leader settles it");
        assert_eq!(kinds_after(&kinds, 2).await, ["intent", "apply_skipped"]);
    }

    #[tokio::test]
    async fn a_stale_known_revision_costs_a_retry_not_a_lost_update() {
        let (provider, _, _) = seeded();
        let kv = Arc::new(MemoryKv::default());
        let key = format!("ns.{NAME}");
        let first = kv.put(&key, &book("mail-site1.example.com", 1, 1, "applied"));
        // Another writer of the same epoch moved the entry on since this applier read it.
        kv.put(&key, &book("mail-site1.example.com", 2, 1, "applied"));
        let (applier, _kinds, _reports, _stop) = applier_over(provider, kv.clone());
        let stale: RecordBook =
            serde_json::from_slice(&book("mail-site1.example.com", 1, 1, "applied")).unwrap();
        let ours: RecordBook =
            serde_json::from_slice(&book("mail-site2.example.com", 3, 1, "applied")).unwrap();
        let revision = applier
            .put_over(NAME, "ns", &ours, Some(Some((stale, first))))
            .await
            .expect("the write lands after a fresh read");
        assert_eq!(kv.refused(), 1, "the stale revision was refused once");
        let entry = kv.get(&key).expect("the entry");
        assert_eq!(entry.revision, revision);
        assert_eq!(read_book(&kv, &key).generation, Generation(3));
    }

    /// A memory provider whose writes to one name wait for a gate (a name throttled upstream)
    /// and, with `listed`, whose `read_many` takes what the records hold, notifies `listed`,
    /// then waits for the gate (a long listing that read a name before a change to it landed).
    struct GatedProvider {
        inner: MemoryProvider,
        gated: &'static str,
        gate: Arc<Notify>,
        listed: Option<Arc<Notify>>,
    }

    impl DnsProvider for GatedProvider {
        fn kind(&self) -> &'static str {
            "gated"
        }

        fn read<'a>(
            &'a self,
            name: &'a str,
        ) -> crate::provider::ProviderFuture<'a, crate::provider::RecordState> {
            self.inner.read(name)
        }

        fn apply<'a>(
            &'a self,
            change: &'a Change,
        ) -> crate::provider::ProviderFuture<'a, ApplyOutcome> {
            Box::pin(async move {
                if change.name == self.gated {
                    self.gate.notified().await;
                }
                self.inner.apply(change).await
            })
        }

        fn read_many<'a>(
            &'a self,
            names: &'a [String],
        ) -> crate::provider::BatchFuture<'a, crate::provider::RecordState> {
            Box::pin(async move {
                let found = self.inner.read_many(names).await;
                if let Some(listed) = &self.listed {
                    listed.notify_one();
                    self.gate.notified().await;
                }
                found
            })
        }
    }

    #[tokio::test]
    async fn a_name_stuck_at_the_provider_holds_up_no_other_name() {
        const OTHER: &str = "owa.example.com";
        let (memory, open, kinds) = seeded();
        memory.insert(
            OTHER,
            "owa-site1.example.com",
            Some("sitewarden epoch=1 gen=0"),
        );
        open.notify_one();
        let gate = Arc::new(Notify::new());
        let (mut applier, mut reports, stop) = applier(memory.clone(), open, kinds);
        applier.provider = Arc::new(GatedProvider {
            inner: memory.clone(),
            gated: NAME,
            gate: gate.clone(),
            listed: None,
        });
        let (apply_tx, _refresh_tx, _scope) = running(applier, &[NAME, OTHER], &stop);
        apply_tx
            .send(vec![set("mail-site2.example.com", 1)])
            .await
            .unwrap();
        let mut owa = set("owa-site2.example.com", 2);
        owa.namespace = OTHER.parse().unwrap();
        apply_tx.send(vec![owa]).await.unwrap();
        // The other name is applied while mail still waits at the provider.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        let applied = loop {
            let report = tokio::time::timeout_at(deadline, reports.recv())
                .await
                .expect("a report before the deadline")
                .expect("the report channel is open");
            if let Input::Provider(ProviderReport::Applied { namespace, .. }) = report {
                break namespace;
            }
        };
        assert_eq!(applied, OTHER);
        let mail = memory.record(NAME).expect("the record");
        assert_eq!(
            mail.content.as_deref(),
            Some("mail-rr.example.com"),
            "mail is still held"
        );
        // Once the provider lets go, mail's change lands too.
        gate.notify_one();
        let applied = loop {
            let report = tokio::time::timeout_at(deadline, reports.recv())
                .await
                .expect("a report before the deadline")
                .expect("the report channel is open");
            if let Input::Provider(ProviderReport::Applied { namespace, .. }) = report {
                break namespace;
            }
        };
        assert_eq!(applied, NAME);
        stop.cancel();
    }

    /// Runs `applier` (its loop and every task it starts, in the returned scope) over `names`,
    /// reading them at start and then hourly: the senders of changes and of takeovers.
    fn running(
        mut applier: Applier,
        names: &[&str],
        stop: &CancellationToken,
    ) -> (
        mpsc::Sender<Vec<SetRecord>>,
        mpsc::Sender<()>,
        super::super::tasks::TaskScope,
    ) {
        let scope = super::super::tasks::TaskScope::default();
        applier.tasks = scope.tasks();
        let (apply_tx, apply_rx) = mpsc::channel(8);
        let (refresh_tx, refresh_rx) = mpsc::channel(1);
        let schedule = Schedule {
            names: names.iter().map(|n| n.parse().unwrap()).collect(),
            targets: Vec::new(),
            reconcile_every: std::time::Duration::from_secs(3600),
            candidate_check: None,
        };
        applier
            .tasks
            .clone()
            .spawn(applier.run(schedule, apply_rx, refresh_rx, stop.clone()));
        (apply_tx, refresh_tx, scope)
    }

    /// The next report from `reports`, within the deadline.
    async fn next_report(
        reports: &mut mpsc::Receiver<Input>,
        deadline: tokio::time::Instant,
    ) -> ProviderReport {
        loop {
            let report = tokio::time::timeout_at(deadline, reports.recv())
                .await
                .expect("a report before the deadline")
                .expect("the report channel is open");
            if let Input::Provider(report) = report {
                return report;
            }
        }
    }

    #[tokio::test]
    async fn a_change_to_a_name_being_read_starts_at_once_and_voids_what_the_read_found() {
        const OTHER: &str = "owa.example.com";
        let (memory, open, kinds) = seeded();
        memory.insert(
            OTHER,
            "owa-site1.example.com",
            Some("sitewarden epoch=1 gen=0"),
        );
        open.notify_one();
        let (listed, gate) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let (mut applier, mut reports, stop) = applier(memory.clone(), open, kinds);
        applier.provider = Arc::new(GatedProvider {
            inner: memory.clone(),
            gated: "",
            gate: gate.clone(),
            listed: Some(listed.clone()),
        });
        let last_seen = applier.last_seen.clone();
        let (apply_tx, refresh_tx, _scope) = running(applier, &[NAME, OTHER], &stop);
        // The first reconcile read runs at start; a takeover read finds every name being read.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        tokio::time::timeout_at(deadline, listed.notified())
            .await
            .expect("the listing has read the records");
        refresh_tx.send(()).await.unwrap();
        // mail fails over while the listing that saw mail-rr is still on its way: the change
        // does not wait for it.
        apply_tx
            .send(vec![set("mail-site2.example.com", 1)])
            .await
            .unwrap();
        match next_report(&mut reports, deadline).await {
            ProviderReport::Applied { namespace, .. } => assert_eq!(namespace, NAME),
            other => panic!("expected mail's change applied first, got {other:?}"),
        }
        // The listing answers: owa is reported as read, mail's stale content is dropped.
        gate.notify_one();
        match next_report(&mut reports, deadline).await {
            ProviderReport::Current { namespace, .. } => assert_eq!(namespace, OTHER),
            other => panic!("expected owa's record, got {other:?}"),
        }
        assert_eq!(
            locked(&last_seen).get(&NAME.parse::<DnsName>().unwrap()),
            Some(&Some("mail-site2.example.com".to_owned())),
            "the next compare-and-set expects what the change wrote"
        );
        // A later read reports mail again, as it is now (asked until the run loop has seen the
        // first read end).
        loop {
            let _ = refresh_tx.try_send(());
            let asked = tokio::time::Instant::now() + std::time::Duration::from_millis(50);
            if tokio::time::timeout_at(asked, listed.notified())
                .await
                .is_ok()
            {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "no second listing");
        }
        gate.notify_one();
        let mut seen = BTreeMap::new();
        while seen.len() < 2 {
            if let ProviderReport::Current {
                namespace, target, ..
            } = next_report(&mut reports, deadline).await
            {
                seen.insert(namespace.to_string(), target.map(|t| t.to_string()));
            }
        }
        assert_eq!(seen[NAME].as_deref(), Some("mail-site2.example.com"));
        stop.cancel();
    }

    #[tokio::test]
    async fn a_group_goes_to_a_batching_provider_in_a_few_calls_with_every_book_kept() {
        const N: usize = 500;
        let provider = MemoryProvider::default().with_batches(200);
        let name = |i: usize| format!("svc{i}.example.com");
        for i in 0..N {
            provider.insert(
                &name(i),
                "site1.example.com",
                Some("sitewarden epoch=1 gen=0"),
            );
        }
        // One bad record: the provider rejects any batch carrying it.
        provider.reject_writes_to(&name(7));
        let kv = Arc::new(MemoryKv::default());
        let (applier, kinds, mut reports, _stop) = applier_over(provider.clone(), kv.clone());
        let group: Vec<SetRecord> = (0..N)
            .map(|i| {
                let mut cmd = set("site2.example.com", 1);
                cmd.namespace = name(i).parse().unwrap();
                cmd
            })
            .collect();
        let drain = tokio::spawn(async move {
            let (mut applied, mut failed) = (0, Vec::new());
            while applied + failed.len() < N {
                match reports.recv().await {
                    Some(Input::Provider(ProviderReport::Applied { .. })) => applied += 1,
                    Some(Input::Provider(ProviderReport::Failed { namespace, .. })) => {
                        failed.push(namespace.to_string());
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            (applied, failed)
        });
        applier.apply_group(group).await;
        let (applied, failed) = drain.await.unwrap();
        assert_eq!((applied, failed), (N - 1, vec![name(7)]));
        // A listing, three batches (200, 200, 100), the halves that isolate the bad record
        // (200 → 100 → 50 → 25 → 12 → 6 → 3 → 1: two calls a level), a listing.
        let calls = provider.stats().calls;
        assert!(calls <= 2 + 3 + 2 * 8, "{calls} calls for {N} names");
        let kinds = kinds_after(&kinds, 2 * N).await;
        assert_eq!(kinds.iter().filter(|k| *k == "intent").count(), N);
        assert_eq!(
            kinds.iter().filter(|k| *k == "apply_applied").count(),
            N - 1
        );
        assert_eq!(kinds.iter().filter(|k| *k == "apply_failed").count(), 1);
        let ns = read_book(&kv, &format!("ns.{}", name(499)));
        assert_eq!(
            (ns.generation, ns.status.as_str()),
            (Generation(1), "applied")
        );
        let intent = read_book(&kv, &format!("intent.{}", name(7)));
        assert_eq!(intent.status, "failed");
    }

    #[test]
    fn a_settlement_says_its_outcome_in_words_not_debug() {
        let failed = outcome_words(&Err(ProviderError::Transient(
            "the write to mail.example.com succeeded but reading back shows mail-site1".into(),
        )));
        assert_eq!(
            failed,
            "failed: DNS provider call failed (will retry): the write to mail.example.com \
             succeeded but reading back shows mail-site1"
        );
        let refused = outcome_words(&Ok(ApplyOutcome::Refused(Refusal::Missing)));
        assert!(refused.starts_with("refused: "), "{refused}");
        assert!(!refused.contains("Missing"), "{refused}");
    }
}
