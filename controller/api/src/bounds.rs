//! The bounds on durations an operator gives (`for` of an override, `since` of a history read),
//! checked by the API and by the CLI before it sends, so both refuse in the same words.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sitewarden_contract::config::duration;

/// Shortest `for` of an override: anything shorter would lapse before an operator could read
/// the answer (and a zero or sub-tick hold is refused by the engine as already expired).
pub const HOLD_MIN: Duration = Duration::from_secs(60);
/// Longest `for` of an override: a year and a day covers any maintenance window; holds meant to
/// last longer are set without `for` and released by hand.
pub const HOLD_MAX: Duration = Duration::from_secs(366 * 86_400);
/// Longest `since` of a history read given as a duration: beyond the default audit retention
/// (30 days) and any sensible `audit_max_age`; an RFC 3339 time may reach back further.
pub const SINCE_MAX: Duration = Duration::from_secs(400 * 86_400);

/// A duration or time given to the API or the CLI that cannot be used. The message names the
/// field (`for`, `since`; `--for`, `--since` in the CLI), the value and what is accepted, in
/// the same words for both.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationRefused {
    /// Not a duration at all.
    #[error("{field}: {cause}")]
    Unreadable {
        /// The field or flag.
        field: String,
        /// Why it does not parse, with the value and how to write one.
        cause: String,
    },
    /// Neither a duration nor an RFC 3339 time (`since`).
    #[error("{field}: {cause}; or give an RFC 3339 time (2026-11-24T03:00:00Z)")]
    UnreadableTime {
        /// The field or flag.
        field: String,
        /// Why it does not parse as a duration, with the value and how to write one.
        cause: String,
    },
    /// A duration outside the accepted range.
    #[error("{field} {value:?} is out of range; give a duration from {min} to {max}")]
    OutOfRange {
        /// The field or flag.
        field: String,
        /// What was given.
        value: String,
        /// The shortest accepted, as written (`1m`).
        min: String,
        /// The longest accepted, as written (`366d`).
        max: String,
    },
    /// A start time after now.
    #[error(
        "{field} {value:?} is in the future; give a time before now or a duration from 0s to {max}"
    )]
    InTheFuture {
        /// The field or flag.
        field: String,
        /// What was given.
        value: String,
        /// The longest duration accepted instead, as written.
        max: String,
    },
    /// A duration that, taken from now, leaves the calendar.
    #[error("{field} reaches outside the calendar; give a shorter duration")]
    OutsideCalendar {
        /// The field or flag.
        field: String,
    },
}

impl DurationRefused {
    /// Whether the text was no duration (or time) at all, as opposed to one out of range: the
    /// API answers 400 for the first and 422 for the second.
    pub fn is_unreadable(&self) -> bool {
        matches!(self, Self::Unreadable { .. } | Self::UnreadableTime { .. })
    }
}

/// `1m`, `366d`, `400d`: a bound the way an operator writes it.
pub fn written(d: Duration) -> String {
    let s = d.as_secs();
    if s == 0 || d.subsec_nanos() != 0 {
        duration::format(d)
    } else if s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// Parses `value` and checks it lies in `min..=max`; `field` names it in the error.
fn bounded(
    field: &str,
    value: &str,
    min: Duration,
    max: Duration,
) -> Result<Duration, DurationRefused> {
    let d = duration::parse(value).map_err(|cause| DurationRefused::Unreadable {
        field: field.to_owned(),
        cause,
    })?;
    if d < min || d > max {
        return Err(DurationRefused::OutOfRange {
            field: field.to_owned(),
            value: value.to_owned(),
            min: written(min),
            max: written(max),
        });
    }
    Ok(d)
}

/// How long an override holds: `value` of the field or flag `field` (`for`, `--for`), from
/// [`HOLD_MIN`] to [`HOLD_MAX`].
pub fn hold_duration(field: &str, value: &str) -> Result<Duration, DurationRefused> {
    bounded(field, value, HOLD_MIN, HOLD_MAX)
}

/// How far back a history read goes: `value` of `field` (`since`, `--since`) as a duration,
/// up to [`SINCE_MAX`].
pub fn since_duration(field: &str, value: &str) -> Result<Duration, DurationRefused> {
    bounded(field, value, Duration::ZERO, SINCE_MAX)
}

/// `now - d` or `now + d` without a panic on overflow (`d` is bounded, so this only guards).
pub fn shifted(
    now: DateTime<Utc>,
    d: Duration,
    back: bool,
    field: &str,
) -> Result<DateTime<Utc>, DurationRefused> {
    let out_of_range = || DurationRefused::OutsideCalendar {
        field: field.to_owned(),
    };
    let d = TimeDelta::from_std(d).map_err(|_| out_of_range())?;
    if back {
        now.checked_sub_signed(d)
    } else {
        now.checked_add_signed(d)
    }
    .ok_or_else(out_of_range)
}

/// `value` of the field or flag `field` (`since`, `--since`) as the time a history read starts:
/// an RFC 3339 time not after `now`, or a duration back from `now` up to [`SINCE_MAX`]. The CLI
/// checks `--since` with this before sending, so both refuse in the same words.
pub fn since_time(
    field: &str,
    value: &str,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, DurationRefused> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        let t = t.with_timezone(&Utc);
        if t > now {
            return Err(DurationRefused::InTheFuture {
                field: field.to_owned(),
                value: value.to_owned(),
                max: written(SINCE_MAX),
            });
        }
        return Ok(t);
    }
    let d = since_duration(field, value).map_err(|e| match e {
        DurationRefused::Unreadable { field, cause } => {
            DurationRefused::UnreadableTime { field, cause }
        }
        other => other,
    })?;
    shifted(now, d, true, field)
}
