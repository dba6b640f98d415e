//! One sink's outbox: which message to post next, as a pure state machine over explicit time.
//!
//! Messages about one subject are posted in the order they were queued, one at a time, so a
//! channel never shows "Up" before the "Down" it answers. Between subjects the most severe goes
//! first (a subject's queue counts as severe as the worst message in it, so a critical is not
//! stuck behind an earlier info about its subject), then the oldest. A failed post waits out its
//! backoff at the head of its subject's queue: it holds back only later messages about that
//! subject, never other subjects and never other sinks. Critical messages do not wait for the
//! rate limit's token (they take one if there is one); everything else does. The sink task
//! ([`super::dispatcher`]) does the I/O and reports each outcome back with [`Outbox::done`] or
//! [`Outbox::retry`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use tokio::time::Instant;

use super::render::Message;
use super::sink::TokenBucket;
use crate::engine::Severity;

/// A message waiting to be posted, or being posted.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Queue order, for fairness between subjects.
    seq: u64,
    /// What to post.
    pub message: Message,
    /// Failed attempts so far.
    pub attempt: u32,
    /// Not before this time (after a failure: the end of its backoff).
    not_before: Instant,
}

impl Entry {
    /// The subject whose order this message keeps.
    pub fn subject(&self) -> &str {
        &self.message.alert.subject
    }
}

/// What to do next.
#[derive(Debug)]
pub enum Next {
    /// Post this now; report the outcome with `done` or `retry`.
    Post(Entry),
    /// Nothing may be posted before this time (a backoff or a token).
    WaitUntil(Instant),
    /// Nothing is waiting that may be posted (empty, or every subject has a post in flight).
    Idle,
}

/// The queue of one sink; see the module documentation.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Per subject, in queue order.
    queues: BTreeMap<String, VecDeque<Entry>>,
    /// Subjects with a post in flight.
    in_flight: BTreeSet<String>,
    /// Messages queued, not counting those in flight.
    len: usize,
    /// The next queue order.
    seq: u64,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Messages waiting (not counting those in flight).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing waits and nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.len == 0 && self.in_flight.is_empty()
    }

    /// Queues `message` behind earlier messages about its subject.
    pub fn push(&mut self, message: Message, now: Instant) {
        self.seq += 1;
        let entry = Entry {
            seq: self.seq,
            message,
            attempt: 0,
            not_before: now,
        };
        self.queues
            .entry(entry.subject().to_owned())
            .or_default()
            .push_back(entry);
        self.len += 1;
    }

    /// The next message to post at `now`, taking a token from `bucket` unless it is critical.
    pub fn next(&mut self, now: Instant, bucket: &mut TokenBucket) -> Next {
        let mut best: Option<(Severity, u64, &str)> = None;
        let mut wake: Option<Instant> = None;
        for (subject, q) in &self.queues {
            let Some(head) = q.front() else { continue };
            if self.in_flight.contains(subject) {
                continue;
            }
            if head.not_before > now {
                wake = Some(wake.map_or(head.not_before, |w| w.min(head.not_before)));
                continue;
            }
            let severity = q
                .iter()
                .map(|e| e.message.severity())
                .max()
                .unwrap_or(Severity::Info);
            let better = best.is_none_or(|(s, seq, _)| {
                (severity, std::cmp::Reverse(head.seq)) > (s, std::cmp::Reverse(seq))
            });
            if better {
                best = Some((severity, head.seq, subject));
            }
        }
        let Some((severity, _, subject)) = best else {
            return wake.map_or(Next::Idle, Next::WaitUntil);
        };
        let subject = subject.to_owned();
        let first_try = self
            .queues
            .get(&subject)
            .and_then(VecDeque::front)
            .is_some_and(|e| e.attempt == 0);
        if first_try {
            let token = bucket.take(now);
            if let Err(wait) = token
                && severity < Severity::Critical
            {
                let at = now + wait;
                return Next::WaitUntil(wake.map_or(at, |w| w.min(at)));
            }
        }
        let Some(entry) = self.queues.get_mut(&subject).and_then(VecDeque::pop_front) else {
            return Next::Idle;
        };
        self.len -= 1;
        self.in_flight.insert(subject);
        Next::Post(entry)
    }

    /// The post of `entry` ended (delivered or given up): its subject's next message may go.
    pub fn done(&mut self, entry: &Entry) {
        let subject = entry.subject();
        self.in_flight.remove(subject);
        if self.queues.get(subject).is_some_and(VecDeque::is_empty) {
            self.queues.remove(subject);
        }
    }

    /// The post of `entry` failed and is tried again at `at`, before later messages about its
    /// subject.
    pub fn retry(&mut self, mut entry: Entry, at: Instant) {
        entry.attempt += 1;
        entry.not_before = at;
        self.in_flight.remove(entry.subject());
        self.queues
            .entry(entry.subject().to_owned())
            .or_default()
            .push_front(entry);
        self.len += 1;
    }

    /// Makes every waiting retry due now (at shutdown: one more attempt each, no more waiting).
    pub fn expedite(&mut self, now: Instant) {
        for e in self.queues.values_mut().flat_map(|q| q.iter_mut()) {
            e.not_before = e.not_before.min(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::Utc;

    use super::*;
    use crate::engine::{Alert, AlertKind};
    use crate::notify::config::Rate;

    fn msg(subject: &str, severity: Severity, text: &str) -> Message {
        Message::single(
            Utc::now(),
            Alert {
                severity,
                kind: AlertKind::SiteVerdict,
                subject: subject.into(),
                text: text.into(),
                evidence: None,
            },
        )
    }

    fn post(next: Next) -> Entry {
        match next {
            Next::Post(e) => e,
            other => panic!("expected a post, got {other:?}"),
        }
    }

    fn bucket(messages: u32, t0: Instant) -> TokenBucket {
        super::super::sink::rate_bucket(
            Rate {
                messages,
                per: Duration::from_secs(60),
            },
            t0,
        )
    }

    #[test]
    fn notify_outbox_posts_the_most_severe_subject_first_and_keeps_each_subjects_order() {
        let t0 = Instant::now();
        let mut b = bucket(100, t0);
        let mut o = Outbox::new();
        o.push(msg("agent-1", Severity::Info, "a1"), t0);
        o.push(msg("site1", Severity::Info, "up"), t0);
        o.push(msg("site1", Severity::Critical, "down"), t0);
        o.push(msg("site2", Severity::Warning, "degraded"), t0);
        // site1 holds a critical: its queue goes first, in its own order.
        let e = post(o.next(t0, &mut b));
        assert_eq!(e.message.alert.text, "up");
        // While it is in flight, other subjects go: the warning, then the info.
        let w = post(o.next(t0, &mut b));
        assert_eq!(w.message.alert.text, "degraded");
        o.done(&e);
        assert_eq!(post(o.next(t0, &mut b)).message.alert.text, "down");
        assert_eq!(post(o.next(t0, &mut b)).message.alert.text, "a1");
        assert!(matches!(o.next(t0, &mut b), Next::Idle));
    }

    #[test]
    fn notify_outbox_a_failing_post_holds_back_only_its_own_subject() {
        let t0 = Instant::now();
        let mut b = bucket(100, t0);
        let mut o = Outbox::new();
        o.push(msg("site1", Severity::Critical, "down"), t0);
        o.push(msg("site1", Severity::Info, "up"), t0);
        let failed = post(o.next(t0, &mut b));
        o.retry(failed, t0 + Duration::from_secs(4));
        // A new alert about another subject goes at once, before site1's retry is due.
        o.push(msg("site2", Severity::Info, "up"), t0);
        let other = post(o.next(t0, &mut b));
        assert_eq!(other.subject(), "site2");
        o.done(&other);
        let Next::WaitUntil(at) = o.next(t0, &mut b) else {
            panic!("site1 waits out its backoff");
        };
        assert_eq!(at, t0 + Duration::from_secs(4));
        let retried = post(o.next(at, &mut b));
        assert_eq!(
            (retried.message.alert.text.as_str(), retried.attempt),
            ("down", 1)
        );
        o.done(&retried);
        assert_eq!(post(o.next(at, &mut b)).message.alert.text, "up");
    }

    #[test]
    fn notify_outbox_criticals_do_not_wait_for_the_rate_limit() {
        let t0 = Instant::now();
        let mut b = bucket(1, t0);
        let mut o = Outbox::new();
        o.push(msg("a", Severity::Info, "first"), t0);
        let first = post(o.next(t0, &mut b));
        o.done(&first);
        o.push(msg("b", Severity::Warning, "paced"), t0);
        assert!(
            matches!(o.next(t0, &mut b), Next::WaitUntil(at) if at == t0 + Duration::from_secs(60))
        );
        o.push(msg("c", Severity::Critical, "page"), t0);
        assert_eq!(post(o.next(t0, &mut b)).message.alert.text, "page");
        assert!(matches!(o.next(t0, &mut b), Next::WaitUntil(_)));
    }

    #[test]
    fn notify_outbox_expedite_makes_retries_due() {
        let t0 = Instant::now();
        let mut b = bucket(100, t0);
        let mut o = Outbox::new();
        o.push(msg("site1", Severity::Warning, "x"), t0);
        let e = post(o.next(t0, &mut b));
        o.retry(e, t0 + Duration::from_secs(60));
        assert!(matches!(o.next(t0, &mut b), Next::WaitUntil(_)));
        o.expedite(t0);
        assert_eq!(post(o.next(t0, &mut b)).attempt, 1);
        assert_eq!(o.len(), 0);
        assert!(!o.is_empty(), "one post is in flight");
    }
}
