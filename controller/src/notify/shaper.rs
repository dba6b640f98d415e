//! No storms: de-duplication and burst aggregation, as a pure state machine over explicit time.
//!
//! A **condition** is the triple (subject, kind, severity): "site1 / site_verdict / warning" is
//! one condition whether the text says Degraded or Unknown; "mail / all_sites_down / critical" is
//! another, and so is "mail / fail_static / critical". The first alert about a subject goes out at
//! once and opens a burst window for that subject. Inside the window an alert goes out at once
//! when it is news:
//!
//! - the first alert of its condition in the window (a new kind, or a new severity of a kind), or
//! - more severe than the last message sent about the subject (the channel shows things better
//!   than they are: Degraded after "Up", Down after "Up").
//!
//! Every other alert in the window is a repeat or a flap of a condition already reported there,
//! no worse than what the channel last showed: it is counted, not sent. When the window closes,
//! one summary ("N more alerts about X in the last M s", with the latest alert; a lone alert is
//! sent as itself) goes out and a new window opens, so a flapping observer yields a few messages
//! and one summary per window, not one per flap. An alert sent at once stands for the alerts of
//! its kind folded before it (they are not summarised again); folded alerts of other kinds still
//! are. Outside a window, an alert identical (kind and text)
//! to the last one sent about its subject within the de-duplication window is dropped. Time
//! arrives as [`Instant`] values, so tests drive it. Nothing here waits: an alert is either sent
//! by the call that offers it, or folded into the summary of its subject's window.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

use crate::engine::{Alert, AlertKind, Severity};

/// Window lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    /// An identical alert about a subject within this long after the last one is dropped.
    pub dedup: Duration,
    /// After a message about a subject, repeats of the conditions reported in it are folded
    /// for this long.
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

/// A condition within a subject: what an alert is about besides its subject.
type Condition = (AlertKind, Severity);

/// The last message sent about a subject.
#[derive(Debug)]
struct Sent {
    /// Its kind and text, for de-duplication.
    kind: AlertKind,
    text: String,
    /// Its severity: what the channel shows about the subject now.
    severity: Severity,
    /// When it was sent.
    at: Instant,
}

impl Sent {
    fn of(alert: &Alert, at: Instant) -> Self {
        Self {
            kind: alert.kind,
            text: alert.text.clone(),
            severity: alert.severity,
            at,
        }
    }
}

/// Per-subject memory.
#[derive(Debug, Default)]
struct Subject {
    /// The last message sent about the subject.
    last_sent: Option<Sent>,
    /// The open burst window, if any.
    burst: Option<Burst>,
}

#[derive(Debug)]
struct Burst {
    /// When the window opened.
    opened: Instant,
    /// Conditions sent about the subject in this window: their repeats are folded.
    reported: BTreeSet<Condition>,
    /// Alerts folded and not yet superseded by one sent at once.
    count: u32,
    /// Their highest severity.
    severity: Severity,
    /// The latest of them.
    latest: Option<Alert>,
}

impl Burst {
    fn open(at: Instant, reported: Condition) -> Self {
        Self {
            opened: at,
            reported: BTreeSet::from([reported]),
            count: 0,
            severity: Severity::Info,
            latest: None,
        }
    }
}

/// De-duplicates and aggregates alerts; see the module documentation.
#[derive(Debug, Default)]
pub struct Shaper {
    windows: Windows,
    subjects: BTreeMap<String, Subject>,
    /// Alerts dropped as duplicates.
    pub deduplicated: u64,
    /// Alerts folded (not sent as themselves): into a summary, or superseded by a later alert
    /// sent at once.
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
    /// Whatever is sent about `alert` is sent by this call: it is never held for later unless
    /// folded as a repeat.
    pub fn offer(&mut self, alert: Alert, now: Instant) -> Vec<Shaped> {
        let w = self.windows;
        let st = self.subjects.entry(alert.subject.clone()).or_default();
        let mut out = Vec::new();
        if st.burst.as_ref().is_some_and(|b| now >= b.opened + w.burst) {
            out.extend(close(st, w, now));
        }
        let shown = st.last_sent.as_ref().map(|s| s.severity);
        if let Some(b) = &mut st.burst {
            let condition = (alert.kind, alert.severity);
            let news = !b.reported.contains(&condition) || shown.is_none_or(|s| alert.severity > s);
            if news {
                // Out at once. It says how its kind stands now, so folded alerts of that kind
                // are not summarised again; folded alerts of another kind still are.
                b.reported.insert(condition);
                if b.latest.as_ref().is_some_and(|l| l.kind == alert.kind) {
                    b.count = 0;
                    b.severity = Severity::Info;
                    b.latest = None;
                }
                st.last_sent = Some(Sent::of(&alert, now));
                out.push(Shaped::Alert(alert));
                return out;
            }
            b.count += 1;
            b.severity = b.severity.max(alert.severity);
            b.latest = Some(alert);
            self.aggregated += 1;
            return out;
        }
        let duplicate = st
            .last_sent
            .as_ref()
            .is_some_and(|s| s.kind == alert.kind && s.text == alert.text && now < s.at + w.dedup);
        if duplicate {
            self.deduplicated += 1;
            return out;
        }
        st.last_sent = Some(Sent::of(&alert, now));
        st.burst = Some(Burst::open(now, (alert.kind, alert.severity)));
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
            st.burst.is_some() || st.last_sent.as_ref().is_some_and(|l| now < l.at + w.dedup)
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
/// subject is evidently busy, in which only the condition just sent counts as reported), else
/// nothing.
fn close(st: &mut Subject, w: Windows, now: Instant) -> Option<Shaped> {
    let b = st.burst.take()?;
    let latest = b.latest?;
    st.last_sent = Some(Sent::of(&latest, now));
    st.burst = Some(Burst::open(now, (latest.kind, latest.severity)));
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

    fn degraded() -> Alert {
        alert(
            AlertKind::SiteVerdict,
            Severity::Warning,
            "site1",
            "site site1 is Degraded",
        )
    }

    const MAIL: &str = "mail.example.com";

    fn fail_static(sev: Severity) -> Alert {
        alert(
            AlertKind::FailStatic,
            sev,
            MAIL,
            "mail.example.com fails static",
        )
    }

    fn mail_resolved() -> Alert {
        alert(
            AlertKind::Resolved,
            Severity::Info,
            MAIL,
            "mail.example.com: resolved",
        )
    }

    fn sent(shaped: &[Shaped]) -> Vec<&Alert> {
        shaped
            .iter()
            .filter_map(|s| match s {
                Shaped::Alert(a) => Some(a),
                Shaped::Summary { .. } => None,
            })
            .collect()
    }

    #[test]
    fn notify_a_flapping_site_yields_three_alerts_and_one_summary_per_window() {
        let t0 = Instant::now();
        let mut s = Shaper::new(Windows::default());
        let mut out = Vec::new();
        for i in 0..50u64 {
            let a = if i % 2 == 0 { down() } else { up() };
            out.extend(s.offer(a, t0 + Duration::from_millis(100 * i)));
        }
        // Down (first of its condition), Up (first of its condition), Down again (worse than
        // the "Up" the channel shows); every later flap is no worse than "Down": folded.
        assert_eq!(
            out,
            vec![
                Shaped::Alert(down()),
                Shaped::Alert(up()),
                Shaped::Alert(down())
            ]
        );
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
        assert_eq!((*count, *severity), (47, Severity::Critical));
        assert_eq!(latest, &up());
        assert_eq!(s.aggregated, 47);
        // The flapping goes on for two more windows: each yields at most two alerts at once
        // (each state once more, as the channel's picture changes) and one summary.
        for window in 1..3u64 {
            let start = t0 + Duration::from_secs(60 * window);
            let mut out = Vec::new();
            for i in 0..100u64 {
                let a = if i % 2 == 0 { down() } else { up() };
                out.extend(s.offer(a, start + Duration::from_millis(1 + 500 * i)));
            }
            assert!(sent(&out).len() <= 2, "window {window}: {out:?}");
            let end = s.due(start + Duration::from_secs(60));
            assert!(
                matches!(end.as_slice(), [Shaped::Summary { .. }]),
                "window {window}: {end:?}"
            );
        }
        // Once it stops, the quiet window closes with nothing to say.
        assert!(s.due(t0 + Duration::from_secs(240)).is_empty());
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn notify_start_up_noise_never_delays_a_critical_of_another_kind() {
        // The lab's start-up: mail.example.com fails static (warning) while sites come Up one
        // at a time, resolves, fails static again, and a critical fail_static goes out.
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut s = Shaper::new(Windows::default());
        assert_eq!(
            sent(&s.offer(fail_static(Severity::Warning), at(0))).len(),
            1
        );
        assert_eq!(sent(&s.offer(mail_resolved(), at(500))).len(), 1);
        // Fails static again: no worse than... worse than "resolved" (info): sent.
        assert_eq!(
            sent(&s.offer(fail_static(Severity::Warning), at(1_000))).len(),
            1
        );
        // Resolved again: a repeat, no worse than the warning the channel shows: folded.
        assert!(s.offer(mail_resolved(), at(1_500)).is_empty());
        let critical = fail_static(Severity::Critical);
        assert_eq!(
            s.offer(critical.clone(), at(2_000)),
            vec![Shaped::Alert(critical)]
        );
        // Then every site is Down: a critical of another kind, 4 s into the window that the
        // noise opened, goes out with the call that raised it (the lab saw it 60 s late).
        let all_down = alert(
            AlertKind::AllSitesDown,
            Severity::Critical,
            MAIL,
            "every site is Down",
        );
        assert_eq!(
            s.offer(all_down.clone(), at(4_000)),
            vec![Shaped::Alert(all_down.clone())]
        );
        // Its own repeat inside the window is folded, with the resolution folded before, into
        // the summary at the window's end.
        let again = alert(
            AlertKind::AllSitesDown,
            Severity::Critical,
            MAIL,
            "every site is Down (still)",
        );
        assert!(s.offer(again.clone(), at(5_000)).is_empty());
        let end = s.due(at(60_000));
        let [Shaped::Summary { count, latest, .. }] = end.as_slice() else {
            panic!("{end:?}");
        };
        assert_eq!((*count, latest), (2, &again));
    }

    #[test]
    fn notify_noise_never_delays_a_new_warning_of_another_kind() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut s = Shaper::new(Windows::default());
        // Noise: fail static and resolved, five times over, in the first 5 s.
        let mut out = Vec::new();
        for i in 0..5u64 {
            out.extend(s.offer(fail_static(Severity::Warning), at(1_000 * i)));
            out.extend(s.offer(mail_resolved(), at(1_000 * i + 500)));
        }
        assert_eq!(sent(&out).len(), 3, "{out:?}");
        // A warning of another kind about the same namespace, 6 s in: out at once.
        let drift = alert(
            AlertKind::Drift,
            Severity::Warning,
            MAIL,
            "mail.example.com holds a target we did not write",
        );
        assert_eq!(
            s.offer(drift.clone(), at(6_000)),
            vec![Shaped::Alert(drift)]
        );
        // And the lab's second case: a site Degraded at start-up, Up, then really Degraded
        // 6 s later; the channel shows "Up", so the Degraded is news and goes out at once.
        assert_eq!(s.offer(degraded(), at(0)).len(), 1);
        assert_eq!(s.offer(up(), at(3_000)).len(), 1);
        assert_eq!(
            s.offer(degraded(), at(6_000)),
            vec![Shaped::Alert(degraded())]
        );
        // What the noise folded on the namespace still ends in one message at the window's end.
        let end = s.due(at(60_000));
        assert_eq!(end.len(), 1, "{end:?}");
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
    fn notify_an_identical_repeat_inside_the_window_is_folded() {
        let t0 = Instant::now();
        let mut s = Shaper::new(Windows::default());
        assert_eq!(s.offer(degraded(), t0).len(), 1);
        assert!(s.offer(degraded(), t0 + Duration::from_secs(1)).is_empty());
        assert!(s.offer(degraded(), t0 + Duration::from_secs(2)).is_empty());
        let end = s.due(t0 + Duration::from_secs(60));
        assert!(
            matches!(end.as_slice(), [Shaped::Summary { count: 2, .. }]),
            "{end:?}"
        );
    }

    #[test]
    fn notify_a_first_resolution_goes_out_at_once_and_a_repeat_is_sent_as_itself_later() {
        let t0 = Instant::now();
        let mut s = Shaper::new(Windows::default());
        let resolved = alert(
            AlertKind::Resolved,
            Severity::Info,
            "site1",
            "site1: resolved",
        );
        assert_eq!(s.offer(down(), t0).len(), 1);
        assert_eq!(
            s.offer(resolved.clone(), t0 + Duration::from_secs(5)),
            vec![Shaped::Alert(resolved.clone())]
        );
        let again = alert(
            AlertKind::Resolved,
            Severity::Info,
            "site1",
            "site1: resolved again",
        );
        assert!(
            s.offer(again.clone(), t0 + Duration::from_secs(6))
                .is_empty()
        );
        assert_eq!(
            s.due(t0 + Duration::from_secs(60)),
            vec![Shaped::Alert(again)]
        );
    }

    #[test]
    fn notify_an_escalation_inside_the_window_goes_out_at_once_then_folds_again() {
        let t0 = Instant::now();
        let mut s = Shaper::new(Windows::default());
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(s.offer(up(), at(0)), vec![Shaped::Alert(up())]);
        assert_eq!(
            s.offer(degraded(), at(100)),
            vec![Shaped::Alert(degraded())]
        );
        // Same condition again, no worse than what the channel shows: folded.
        assert!(s.offer(degraded(), at(200)).is_empty());
        assert_eq!(s.offer(down(), at(300)), vec![Shaped::Alert(down())]);
        // Nothing is worse than Critical, and Up and Down were both reported: the flapping
        // that follows is folded.
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
        assert_eq!(s.aggregated, 11);
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
        assert!(s.offer(down(), t0).is_empty());
        assert_eq!(s.flush(t0).len(), 1);
    }
}
