//! `sitewarden`, the operator CLI: status, explain, history, overrides and plan, over the
//! controllers' operator API (`/api/v1`).
//!
//! The binary (`src/main.rs`) only parses arguments and calls [`run`]; everything it
//! does lives here so it can be tested. [`connection`] finds the controllers and the token,
//! [`client`] sends a request to each controller of the pair in turn, [`render`] turns the
//! API's JSON into aligned tables ([`table`]). `--json` prints the API's own JSON instead.
//!
//! Terminal safety: everything printed that came from the bus, the API or an operator is escaped
//! with [`sitewarden_contract::terminal`] — tables and single-line fields with `line`, the
//! multi-line `explain` text and error messages with `block`, `--json` output with `json` (same
//! JSON, unsafe characters as `\uXXXX`) — so no value can run escape codes, reorder text with
//! bidi overrides or forge an output line.
//!
//! Exit codes ([`Exit`]): 0 done; 1 the API answered with an error or refused the change;
//! 2 usage or configuration error (nothing was sent); 3 no controller could be reached;
//! 4 the token was refused (401/403). `docs/cli.md` documents every command.

// Functions stay short enough to read and test on their own (threshold in clippy.toml);
// documentation is part of the API; product code never unwraps.
#![warn(clippy::too_many_lines, missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod client;
pub mod connection;
pub mod leader_memory;
pub mod render;
pub mod table;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde_json::Value;
use sitewarden_api::wire::{CreateOverride, ReleaseOverride};
use sitewarden_api::wire::{ExplainAnswer, HistoryAnswer, Status};
use sitewarden_contract::{DnsName, terminal};
use sitewarden_engine::OverrideRequest;

use client::{Answer, Client};

use sitewarden_api::bounds as api;

/// The CLI's exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done.
    Ok = 0,
    /// The API answered with an error (4xx other than 401/403, 5xx) or refused the change.
    Refused = 1,
    /// Bad arguments or configuration; nothing was sent.
    Usage = 2,
    /// No controller could be reached.
    Unreachable = 3,
    /// The token was missing, unknown or not allowed (401/403).
    Auth = 4,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// Why a command failed, with the exit code it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The exit code.
    pub exit: Exit,
    /// What went wrong and what to do (never contains the token).
    pub message: String,
}

impl Failure {
    /// A failure.
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Failure {
    /// The message escaped for the terminal (it may quote the API's error text).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&terminal::block(&self.message))
    }
}

/// `sitewarden`'s arguments.
#[derive(Debug, Parser)]
#[command(
    name = "sitewarden",
    version,
    about = "Operate sitewarden: see site state, ask why, pin, drain, freeze and release",
    after_help = "Exit codes: 0 ok, 1 the API refused or answered an error, 2 usage or config error, \
                  3 controller unreachable, 4 token refused (401/403). See docs/cli.md."
)]
pub struct Cli {
    /// Controller base URL; give it twice for both controllers of the pair (tried in order).
    #[arg(
        long = "url",
        global = true,
        env = "SITEWARDEN_URL",
        value_delimiter = ','
    )]
    pub urls: Vec<String>,
    /// Bearer token for the API (prefer SITEWARDEN_TOKEN or a token file in cli.toml).
    #[arg(long, global = true, env = "SITEWARDEN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CLI config file (default ~/.config/sitewarden/cli.toml).
    #[arg(long, global = true, env = "SITEWARDEN_CLI_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the API's JSON instead of tables (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--reason` and `--for` of the commands that create an override.
#[derive(Debug, Args)]
pub struct Hold {
    /// How long the override holds (`30m`, `4h`); default until released.
    #[arg(long = "for", value_name = "DURATION")]
    pub for_: Option<String>,
    /// Why (required; goes into the audit trail with your token's name).
    #[arg(long, required = true)]
    pub reason: String,
    /// Do it even if it points a name at a site that is not Up (a pin to a Down or drained
    /// site, a drain that leaves a name nowhere to go); refused without it.
    #[arg(long)]
    pub force: bool,
}

/// `--reason` alone (failback, release).
#[derive(Debug, Args)]
pub struct Reason {
    /// Why (required; goes into the audit trail with your token's name).
    #[arg(long, required = true)]
    pub reason: String,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sites with their verdicts and evidence, namespaces, DAGs, leader and overrides.
    Status {
        /// How many managed names to list (those with a change pending first, then those off
        /// their preferred target; default 200), or `all`.
        #[arg(long)]
        names: Option<String>,
    },
    /// Why a managed name points where it does.
    Explain {
        /// The managed name, e.g. mail.example.com.
        name: DnsName,
    },
    /// Decisions, verdicts, overrides and alerts from the audit trail.
    History {
        /// From when: a duration back from now (`15m`, `2h`) or an RFC 3339 time.
        #[arg(long, default_value = "1h")]
        since: String,
        /// At most this many records (1 to 1000; default 200), newest first.
        #[arg(long)]
        limit: Option<usize>,
        /// Only these kinds (`decision`, `verdict`, `alert`, `override`, `apply_applied`, …;
        /// repeat or separate with commas).
        #[arg(long, value_delimiter = ',')]
        kind: Vec<String>,
        /// Only records that name this (a managed name or a target).
        #[arg(long)]
        name: Option<String>,
        /// Only records that name this site.
        #[arg(long)]
        site: Option<String>,
        /// Only alerts of this severity (critical, warning, info).
        #[arg(long)]
        severity: Option<String>,
        /// Everything: the standby's records and the edge notices and webhooks too.
        #[arg(long)]
        all: bool,
        /// The next, older page: records below this sequence number (the answer's `next`).
        #[arg(long, value_name = "SEQ")]
        before: Option<u64>,
        /// Keep printing new records as they are written (every 2 s) until interrupted.
        #[arg(long, conflicts_with = "before")]
        follow: bool,
    },
    /// Hold a managed name on one of its targets, whatever the verdicts say.
    Pin {
        /// The managed name.
        name: DnsName,
        /// One of its configured targets.
        target: DnsName,
        /// How long it holds and why.
        #[command(flatten)]
        hold: Hold,
    },
    /// Treat a site as down for routing (planned maintenance).
    Drain {
        /// The site.
        site: String,
        /// How long it holds and why.
        #[command(flatten)]
        hold: Hold,
    },
    /// Stop automatic changes of one name, or of every name when none is given.
    Freeze {
        /// The managed name (default: every name).
        name: Option<DnsName>,
        /// How long it holds and why.
        #[command(flatten)]
        hold: Hold,
    },
    /// Move a name back to its most preferred healthy target now (manual failback).
    Failback {
        /// The managed name.
        name: DnsName,
        /// Why (audited).
        #[command(flatten)]
        reason: Reason,
    },
    /// Remove a pin, a drain or a freeze.
    Release {
        /// Which override.
        #[command(subcommand)]
        what: Release,
    },
    /// Where each name points and where the engine wants it, without changing anything.
    Plan,
    /// The name and role of the token in use.
    Whoami,
}

/// What `release` removes.
#[derive(Debug, Subcommand)]
pub enum Release {
    /// The pin on a name.
    Pin {
        /// The managed name.
        name: DnsName,
        /// Why (audited).
        #[command(flatten)]
        reason: Reason,
    },
    /// The drain of a site.
    Drain {
        /// The site.
        site: String,
        /// Why (audited).
        #[command(flatten)]
        reason: Reason,
    },
    /// The freeze of one name, or of every name when none is given.
    Freeze {
        /// The managed name (default: the freeze of every name).
        name: Option<DnsName>,
        /// Why (audited).
        #[command(flatten)]
        reason: Reason,
    },
}

/// Checks a reason locally so a blank one is a usage error and nothing is sent.
fn reason(r: &str) -> Result<String, Failure> {
    let r = r.trim();
    if r.is_empty() {
        return Err(Failure::new(
            Exit::Usage,
            "--reason must say why (it goes into the audit trail)",
        ));
    }
    Ok(r.to_owned())
}

/// Checks `--for` locally with the controller's own syntax and bounds (1m to 366d), so an
/// out-of-range hold is a usage error and nothing is sent.
fn hold_for(f: &Option<String>) -> Result<Option<String>, Failure> {
    match f {
        None => Ok(None),
        Some(f) => {
            api::hold_duration("--for", f).map_err(|e| Failure::new(Exit::Usage, e.to_string()))?;
            Ok(Some(f.clone()))
        }
    }
}

/// `history --follow`: prints the page, oldest first, then every record written since, every
/// 2 s, until interrupted (or the controller stops answering).
async fn follow_history(
    client: &client::Client,
    mut query: Vec<(&'static str, String)>,
    first: HistoryAnswer,
    colour: bool,
) -> Result<String, Failure> {
    let mut shown = first;
    shown.records.reverse();
    loop {
        let newest = shown.records.iter().filter_map(|r| r.seq).max();
        if !shown.records.is_empty() {
            print!("{}", render::history(&shown, colour));
        }
        if let Some(seq) = newest {
            query.retain(|(k, _)| *k != "after");
            query.push(("after", seq.to_string()));
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let a = client.get(&["api", "v1", "history"], &query).await?;
        shown = typed(&a, "a history", "history")?;
        // Newest first on the wire; a follower reads down the page, oldest first.
        shown.records.reverse();
    }
}

/// Checks `--since` locally with the controller's own syntax and bounds (an RFC 3339 time not
/// in the future, or a duration up to 400d).
fn history_since(since: &str) -> Result<(), Failure> {
    api::since_time("--since", since, chrono::Utc::now())
        .map(|_| ())
        .map_err(|e| Failure::new(Exit::Usage, e.to_string()))
}

/// The request body of an override command, or `None` for a read.
fn write_body(command: &Command) -> Result<Option<(&'static str, Value)>, Failure> {
    let create = |action: &str,
                  namespace: Option<&DnsName>,
                  target: Option<&DnsName>,
                  site: Option<&String>,
                  hold: Option<&Hold>,
                  why: &str|
     -> Result<(&'static str, Value), Failure> {
        let body = CreateOverride {
            action: action.to_owned(),
            namespace: namespace.map(DnsName::to_string),
            target: target.map(DnsName::to_string),
            site: site.cloned(),
            for_: hold.map(|h| hold_for(&h.for_)).transpose()?.flatten(),
            reason: reason(why)?,
            force: hold.is_some_and(|h| h.force),
        };
        Ok(("overrides", to_value(&body)))
    };
    let release = |kind: &str, subject: Option<&str>, why: &str| {
        let body = ReleaseOverride {
            kind: kind.to_owned(),
            subject: subject.map(str::to_owned),
            reason: reason(why)?,
        };
        Ok::<_, Failure>(("release", to_value(&body)))
    };
    Ok(Some(match command {
        Command::Pin { name, target, hold } => create(
            "pin",
            Some(name),
            Some(target),
            None,
            Some(hold),
            &hold.reason,
        )?,
        Command::Drain { site, hold } => {
            create("drain", None, None, Some(site), Some(hold), &hold.reason)?
        }
        Command::Freeze { name, hold } => create(
            "freeze",
            name.as_ref(),
            None,
            None,
            Some(hold),
            &hold.reason,
        )?,
        Command::Failback { name, reason: r } => {
            create("failback", Some(name), None, None, None, &r.reason)?
        }
        Command::Release { what } => match what {
            Release::Pin { name, reason: r } => release("pin", Some(name), &r.reason)?,
            Release::Drain { site, reason: r } => release("drain", Some(site), &r.reason)?,
            Release::Freeze { name, reason: r } => release("freeze", name.as_deref(), &r.reason)?,
        },
        _ => return Ok(None),
    }))
}

/// A request body as JSON (these types always serialize).
fn to_value<T: serde::Serialize>(body: &T) -> Value {
    serde_json::to_value(body).unwrap_or(Value::Null)
}

/// `--json` output: the API's JSON, pretty-printed and terminal-safe.
fn pretty(v: &Value) -> String {
    terminal::json(&serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())) + "\n"
}

/// An answer as the typed `T`, or what to do when this CLI cannot read it (another version).
fn typed<T: serde::de::DeserializeOwned>(
    a: &Answer,
    what: &str,
    command: &str,
) -> Result<T, Failure> {
    serde_json::from_value(a.body.clone()).map_err(|e| {
        Failure::new(
            Exit::Refused,
            format!(
                "{} answered {what} this CLI cannot read ({e}); is it another version? \
                 `sitewarden {command} --json` shows the answer as it is",
                a.controller
            ),
        )
    })
}

/// What a write did, in words.
fn write_result(a: &Answer) -> String {
    let request = &a.body["request"];
    let what = serde_json::from_value::<OverrideRequest>(request.clone()).map_or_else(
        |_| render::text(&request["action"]),
        |r| render::action_words(&r.action),
    );
    let id = render::text(&a.body["id"]);
    let controller = match &a.identity {
        Some((id, _)) => format!("{} at {}", terminal::line(id), a.controller),
        None => terminal::line(a.controller.as_str()),
    };
    if a.body["applied"] == true {
        format!("done: {what} (override {id}, applied by {controller})\n")
    } else {
        format!(
            "accepted: {what} (override {id}); stored on the bus but not yet applied by {controller} — check `sitewarden status`\n"
        )
    }
}

/// Runs one command and returns what to print on stdout.
pub async fn run(cli: Cli) -> Result<String, Failure> {
    // Everything the user typed is checked before any connection is made.
    let write = write_body(&cli.command)?;
    if let Command::History { since, .. } = &cli.command {
        history_since(since)?;
    }
    let file = match &cli.config {
        Some(p) => connection::read_file(p, true)?,
        None => match connection::default_config_path() {
            Some(p) => connection::read_file(&p, false)?,
            None => connection::CliFile::default(),
        },
    };
    let conn = connection::resolve(&cli.urls, cli.token.as_deref(), file)?;
    let client = Client::new(conn)?;
    let colour = table::colour_on_stdout();
    let api = ["api", "v1"];
    if let Some((endpoint, body)) = write {
        let path: Vec<&str> = if endpoint == "release" {
            vec![api[0], api[1], "overrides", "release"]
        } else {
            vec![api[0], api[1], "overrides"]
        };
        let a = client.post(&path, &body).await?;
        return Ok(if cli.json {
            pretty(&a.body)
        } else {
            write_result(&a)
        });
    }
    match &cli.command {
        Command::Status { names } => {
            let query: Vec<(&str, String)> = names.iter().map(|n| ("names", n.clone())).collect();
            let a = client.get(&["api", "v1", "status"], &query).await?;
            if cli.json {
                return Ok(pretty(&a.body));
            }
            let status: Status = typed(&a, "a status", "status")?;
            Ok(render::status(&status, colour))
        }
        Command::Explain { name } => {
            let a = client
                .get(&["api", "v1", "namespaces", name, "explain"], &[])
                .await?;
            if cli.json {
                return Ok(pretty(&a.body));
            }
            // Rendered here from the typed explanation, in this CLI's words.
            let x: ExplainAnswer = typed(&a, "an explanation", &format!("explain {name}"))?;
            Ok(terminal::block(&x.explanation.to_string()))
        }
        Command::History {
            since,
            limit,
            kind,
            name,
            site,
            severity,
            all,
            before,
            follow,
        } => {
            let mut query = vec![("since", since.clone())];
            let mut add = |k: &'static str, v: Option<String>| {
                if let Some(v) = v {
                    query.push((k, v));
                }
            };
            add("limit", limit.map(|l| l.to_string()));
            add("kind", (!kind.is_empty()).then(|| kind.join(",")));
            add("name", name.clone());
            add("site", site.clone());
            add("severity", severity.clone());
            add("all", all.then(|| "true".to_owned()));
            add("before", before.map(|b| b.to_string()));
            let a = client.get(&["api", "v1", "history"], &query).await?;
            if cli.json && !follow {
                return Ok(pretty(&a.body));
            }
            let h: HistoryAnswer = typed(&a, "a history", "history")?;
            if *follow {
                return follow_history(&client, query, h, colour).await;
            }
            Ok(render::history(&h, colour))
        }
        Command::Plan => {
            // Every name: the plan is about each of them.
            let a = client
                .get(&["api", "v1", "status"], &[("names", "all".to_owned())])
                .await?;
            let p = render::plan_json(&a.body);
            Ok(if cli.json {
                pretty(&p)
            } else {
                render::plan(&p, colour)
            })
        }
        Command::Whoami => {
            let a = client.get(&["api", "v1", "whoami"], &[]).await?;
            Ok(if cli.json {
                pretty(&a.body)
            } else {
                format!(
                    "{} ({}) at {}\n",
                    terminal::line(a.body["name"].as_str().unwrap_or("anonymous")),
                    terminal::line(a.body["role"].as_str().unwrap_or("read, anonymous")),
                    terminal::line(a.controller.as_str())
                )
            })
        }
        // Writes were handled above.
        _ => Err(Failure::new(Exit::Usage, "unknown command")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("sitewarden").chain(args.iter().copied()))
    }

    #[test]
    fn every_write_needs_a_reason_and_usage_errors_exit_2() {
        for args in [
            &["pin", "mail.example.com", "mail-site2.example.com"][..],
            &["drain", "site1"],
            &["freeze"],
            &["failback", "mail.example.com"],
            &["release", "pin", "mail.example.com"],
            &["release", "freeze"],
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}");
            assert!(e.to_string().contains("--reason"), "{args:?}: {e}");
        }
        let cli = parse(&["drain", "site1", "--reason", "  "]).unwrap();
        assert_eq!(write_body(&cli.command).unwrap_err().exit, Exit::Usage);
        let cli = parse(&["drain", "site1", "--for", "soon", "--reason", "x"]).unwrap();
        assert_eq!(write_body(&cli.command).unwrap_err().exit, Exit::Usage);
    }

    #[test]
    fn names_are_checked_and_lowercased_before_sending_and_a_non_name_exits_2() {
        let cli = parse(&[
            "pin",
            "Mail.Example.COM.",
            "MAIL-site2.example.com",
            "--reason",
            "x",
        ])
        .unwrap();
        let (_, body) = write_body(&cli.command).unwrap().unwrap();
        assert_eq!(body["namespace"], "mail.example.com");
        assert_eq!(body["target"], "mail-site2.example.com");
        for args in [
            &[
                "pin",
                "mail example.com",
                "mail-site2.example.com",
                "--reason",
                "x",
            ][..],
            &["explain", "mail/example"],
            &["release", "pin", "a..b", "--reason", "x"],
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}");
            assert!(e.to_string().contains("mail.example.com"), "{args:?}: {e}");
        }
    }

    #[test]
    fn durations_out_of_the_apis_range_are_usage_errors_in_the_apis_words() {
        for f in ["0s", "1ns", "1000000y"] {
            let cli = parse(&["drain", "site1", "--for", f, "--reason", "x"]).unwrap();
            let e = write_body(&cli.command).unwrap_err();
            assert_eq!(e.exit, Exit::Usage, "{f}");
            let api = sitewarden_api::hold_duration("for", f).unwrap_err();
            assert_eq!(e.message, format!("--{api}"), "{f}");
            assert!(e.message.contains("from 1m to 366d"), "{}", e.message);
        }
        for s in ["1000000y", "401d", "2999-01-01T00:00:00Z"] {
            let e = history_since(s).unwrap_err();
            assert_eq!(e.exit, Exit::Usage, "{s}");
            assert!(e.message.starts_with("--since"), "{}", e.message);
        }
        assert!(history_since("400d").is_ok());
        assert!(history_since("2026-01-01T00:00:00Z").is_ok());
    }

    #[test]
    fn writes_become_the_api_bodies() {
        let cli = parse(&[
            "--url",
            "http://a:1",
            "--url",
            "http://b:2",
            "pin",
            "mail.example.com",
            "mail-site2.example.com",
            "--for",
            "30m",
            "--reason",
            "CHG-1",
        ])
        .unwrap();
        assert_eq!(cli.urls, vec!["http://a:1", "http://b:2"]);
        let (endpoint, body) = write_body(&cli.command).unwrap().unwrap();
        assert_eq!(endpoint, "overrides");
        assert_eq!(
            body,
            serde_json::json!({"action": "pin", "namespace": "mail.example.com",
                   "target": "mail-site2.example.com", "for": "30m", "reason": "CHG-1"})
        );
        let cli = parse(&["release", "freeze", "--reason", "done"]).unwrap();
        let (endpoint, body) = write_body(&cli.command).unwrap().unwrap();
        assert_eq!(endpoint, "release");
        assert_eq!(
            body,
            serde_json::json!({"kind": "freeze", "subject": null, "reason": "done"})
        );
        assert!(
            write_body(&parse(&["status"]).unwrap().command)
                .unwrap()
                .is_none()
        );
    }
}
