//! No storms: de-duplication and burst aggregation, as a pure state machine over explicit time.
//!
//! The first alert about a subject goes out at once and opens a burst window for that subject.
//! Further alerts about it inside the window are counted, not sent; when the window closes, one
//! summary ("N more alerts about X in the last M s", with the latest alert; a lone alert is sent
//! as itself) goes out and a new window opens, so a flapping observer yields one message per window, not one per flap.
//! An alert more severe than anything sent about its subject in the window is not held back: it
//! goes out at once (a Degraded warning must not delay the Down page by a minute) and stands for
//! what was folded before it. Outside
//! a window, an alert identical (kind and text) to the last one sent about its subject within
//! the de-duplication window is dropped. Time arrives as [`Instant`] values, so tests drive it.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::engine::{Alert, AlertKind, Severity};

/// Window lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    /// An identical alert about a subject within this long after the last one is dropped.
    pub dedup: Duration,
    /// After a message about a subject, further alerts about it this long are folded into one.
    pub burst: Duration,
}

impl Default for Windows {
    fn default() -> Self {
        Self {
            dedup: Duration::from_secs(600),
            burst: Duration::from_secs(60),
        }
    }
}

/// What the shaper lets through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shaped {
    /// Send this alert.
    Alert(Alert),
    /// Send a summary of a burst.
    Summary {
        /// Alerts folded into it.
        count: u32,
        /// The window they arrived in.
        window: Duration,
        /// Their highest severity.
        severity: Severity,
        /// The most recent one, which says how things stand now.
        latest: Alert,
    },
}

/// Per-subject memory.
#[derive(Debug, Default)]
struct Subject {
    /// The last message sent about the subject: its kind, text and time.
    last_sent: Option<(AlertKind, String, Instant)>,
    /// The open burst window, if any.
    burst: Option<Burst>,
}

#[derive(Debug)]
struct Burst {
    /// When the window opened.
    opened: Instant,
    /// Alerts folded so far.
    count: u32,
    /// Their highest severity.
    severity: Severity,
    /// The latest of them.
    latest: Option<Alert>,
    /// The highest severity sent about the subject since the window opened.
    sent: Severity,
}

/// De-duplicates and aggregates alerts; see the module documentation.
#[derive(Debug, Default)]
pub struct Shaper {
    windows: Windows,
    subjects: BTreeMap<String, Subject>,
    /// Alerts dropped as duplicates.
    pub deduplicated: u64,
    /// Alerts folded into a summary.
    pub aggregated: u64,
}

impl Shaper {
    /// A shaper with these windows.
    pub fn new(windows: Windows) -> Self {
        Self {
            windows,
            ..Self::default()
        }
    }

    /// Takes one alert at `now`; returns what to send now (a closed burst's summary first).
    pub fn offer(&mut self, alert: Alert, now: Instant) -> Vec<Shaped> {
        let w = self.windows;
        let st = self.subjects.entry(alert.subject.clone()).or_default();
        let mut out = Vec::new();
        if st.burst.as_ref().is_some_and(|b| now >= b.opened + w.burst) {
            out.extend(close(st, w, now));
        }
        if let Some(b) = &mut st.burst {
            if alert.severity > b.sent {
                // Escalation: out at once; it says how things stand now, so what was folded
                // before it is not summarised again.
                self.aggregated -= u64::from(b.count);
                b.sent = alert.severity;
                b.count = 0;
                b.severity = Severity::Info;
                b.latest = None;
                st.last_sent = Some((alert.kind, alert.text.clone(), now));
                out.push(Shaped::Alert(alert));
                return out;
            }
            b.count += 1;
            b.severity = b.severity.max(alert.severity);
            b.latest = Some(alert);
            self.aggregated += 1;
            return out;
        }
        let duplicate = st.last_sent.as_ref().is_some_and(|(k, text, at)| {
            *k == alert.kind && *text == alert.text && now < *at + w.dedup
        });
        if duplicate {
            self.deduplicated += 1;
            return out;
        }
        st.last_sent = Some((alert.kind, alert.text.clone(), now));
        st.burst = Some(Burst {
            opened: now,
            count: 0,
            severity: alert.severity,
            latest: None,
            sent: alert.severity,
        });
        out.push(Shaped::Alert(alert));
        out
    }

    /// Closes every burst window that ended by `now` and forgets stale subjects.
    pub fn due(&mut self, now: Instant) -> Vec<Shaped> {
        let w = self.windows;
        let mut out = Vec::new();
        for st in self.subjects.values_mut() {
            if st.burst.as_ref().is_some_and(|b| now >= b.opened + w.burst) {
                out.extend(close(st, w, now));
            }
        }
        self.subjects.retain(|_, st| {
            st.burst.is_some() || st.last_sent.as_ref().is_some_and(|l| now < l.2 + w.dedup)
        });
        out
    }

    /// Summaries of every open burst, at shutdown.
    pub fn flush(&mut self, now: Instant) -> Vec<Shaped> {
        let w = self.windows;
        let mut out = Vec::new();
        for st in self.subjects.values_mut() {
            out.extend(close(st, w, now));
            st.burst = None;
        }
        out
    }

    /// When the next burst window closes.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.subjects
            .values()
            .filter_map(|s| s.burst.as_ref().map(|b| b.opened + self.windows.burst))
            .min()
    }
}

/// Ends `st`'s burst window: a summary if anything was folded (and a fresh window, since the
/// subject is evidently busy), else nothing.
fn close(st: &mut Subject, w: Windows, now: Instant) -> Option<Shaped> {
    let b = st.burst.take()?;
    let latest = b.latest?;
    st.last_sent = Some((latest.kind, latest.text.clone(), now));
    st.burst = Some(Burst {
        opened: now,
        count: 0,
        severity: Severity::Info,
        latest: None,
        // What this close sends: the lone alert's severity, or the summary's.
        sent: if b.count == 1 {
            latest.severity
        } else {
            b.severity
        },
    });
    if b.count == 1 {
        // One alert is not a burst: send it as itself (a resolution then reads as one).
        return Some(Shaped::Alert(latest));
    }
    Some(Shaped::Summary {
        count: b.count,
        window: w.burst,
        severity: b.severity,
        latest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(kind: AlertKind, sev: Severity, subject: &str, text: &str) -> Alert {
        Alert {
            severity: sev,
            kind,
            subject: subject.into(),
            text: text.into(),
            evidence: None,
        }
    }

    fn down() -> Alert {
        alert(
            AlertKind::SiteVerdict,
            Severity::Critical,
            "site1",
            "site site1 is Down",
        )
    }

    fn up() -> Alert {
        alert(
            AlertKind::SiteVerdict,
            Severity::Info,
            "site1",
            "site site1 is Up",
        )
    }

    #[test]
    fn notify_a_flapping_site_yields_one_alert_and_one_summary() {
        let t0 = Instant::now();
        let mut s = Shaper::new(Windows::default());
        let mut sent = Vec::new();
        for i in 0..50u64 {
            let a = if i % 2 == 0 { down() } else { up() };
            sent.extend(s.offer(a, t0 + Duration::from_millis(100 * i)));
        }
        assert_eq!(sent, vec![Shaped::Alert(down())]);
        assert_eq!(s.next_deadline(), Some(t0 + Duration::from_secs(60)));
        let summary = s.due(t0 + Duration::from_secs(60));
        let [
            Shaped::Summary {
                count,
                severity,
                latest,
                ..
            },
        ] = summary.as_slice()
        else {
            panic!("{summary:?}");
        };
        assert_eq!((*count, *severity), (49, Severity::Critical));
        assert_eq!(latest, &up());
        // The quiet window after the summary closes with nothing to say.
        assert!(s.due(t0 + Duration::from_secs(120)).is_empty());
        assert_eq!(s.next_deadline(), None);
        assert_eq!(s.aggregated, 49);
    }

    #[test]
    fn notify_repeats_are_dropped_within_the_dedup_window_and_resolution_rearms() {
        let t0 = Instant::now();
        let mut s = Shaper::new(Windows {
            dedup: Duration::from_secs(600),
            burst: Duration::from_secs(10),
        });
        assert_eq!(s.offer(down(), t0).len(), 1);
        assert!(s.due(t0 + Duration::from_secs(10)).is_empty());
        // Same alert, outside the burst window but inside the dedup window: dropped.
        assert!(s.offer(down(), t0 + Duration::from_secs(30)).is_empty());
        assert_eq!(s.deduplicated, 1);
        // A resolution goes out, and the problem coming back later is news again.
        let resolved = alert(
            AlertKind::Resolved,
            Severity::Info,
            "site1",
            "site1: resolved",
        );
        assert_eq!(s.offer(resolved, t0 + Duration::from_secs(40)).len(), 1);
        assert!(s.due(t0 + Duration::from_secs(50)).is_empty());
        assert_eq!(s.offer(down(), t0 + Duration::from_secs(60)).len(), 1);
        // After the dedup window the same alert is sent again.
        assert!(s.due(t0 + Duration::from_secs(70)).is_empty());
        assert_eq!(s.offer(down(), t0 + Duration::from_secs(700)).len(), 1);
    }

    #[test]
    fn notify_a_lone_follow_up_in_the_window_is_sent_as_itself() {
        let t0 = Instant::now();
        let mut s = Shaper::new(Windows::default());
        let resolved = alert(
            AlertKind::Resolved,
            Severity::Info,
            "site1",
            "site1: resolved",
        );
        assert_eq!(s.offer(down(), t0).len(), 1);
        assert!(
            s.offer(resolved.clone(), t0 + Duration::from_secs(5))
                .is_empty()
        );
        assert_eq!(
            s.due(t0 + Duration::from_secs(60)),
            vec![Shaped::Alert(resolved)]
        );
    }

    #[test]
    fn notify_an_escalation_inside_the_window_goes_out_at_once_then_folds_again() {
        let t0 = Instant::now();
        let mut s = Shaper::new(Windows::default());
        let degraded = alert(
            AlertKind::SiteVerdict,
            Severity::Warning,
            "site1",
            "site site1 is Degraded",
        );
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(s.offer(up(), at(0)), vec![Shaped::Alert(up())]);
        assert_eq!(
            s.offer(degraded.clone(), at(100)),
            vec![Shaped::Alert(degraded.clone())]
        );
        // Same severity again: folded.
        assert!(s.offer(degraded.clone(), at(200)).is_empty());
        assert_eq!(s.offer(down(), at(300)), vec![Shaped::Alert(down())]);
        // Nothing more severe than Critical: the flapping that follows is folded as before.
        for i in 0..10 {
            let a = if i % 2 == 0 { up() } else { down() };
            assert!(s.offer(a, at(400 + i * 100)).is_empty());
        }
        let summary = s.due(t0 + Duration::from_secs(60));
        let [Shaped::Summary { count, latest, .. }] = summary.as_slice() else {
            panic!("{summary:?}");
        };
        assert_eq!(
            (*count, latest),
            (10, &down()),
            "the folded Degraded is superseded"
        );
        assert_eq!(s.aggregated, 10);
    }

    #[test]
    fn notify_subjects_are_shaped_independently() {
        let t0 = Instant::now();
        let mut s = Shaper::new(Windows::default());
        let other = alert(
            AlertKind::FailStatic,
            Severity::Warning,
            "mail.example.com",
            "x",
        );
        assert_eq!(s.offer(down(), t0).len(), 1);
        assert_eq!(s.offer(other, t0).len(), 1);
        assert!(s.offer(up(), t0).is_empty());
        assert_eq!(s.flush(t0).len(), 1);
    }
}
