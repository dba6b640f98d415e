//! A minimal client of HAProxy's Runtime API over its unix socket.
//!
//! One command per connection, HAProxy's non-interactive mode: write the command and a newline,
//! read until HAProxy closes. `set server <b>/<s> state ready|drain|maint` answers an empty
//! line on success and a sentence ("No such server.") otherwise; `show servers state <b>`
//! answers a version line, a `#` header naming the columns and one line per server. Columns
//! are found by name, so later HAProxy versions that append columns still parse.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one command may take, connect included.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest answer read (a backend with thousands of servers stays well below).
const MAX_ANSWER: u64 = 4 * 1024 * 1024;

/// A server's administrative state as we set and verify it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AdminState {
    /// Takes traffic (no maintenance or drain flag).
    Ready,
    /// No new connections (`FDRAIN` or an inherited drain).
    Drain,
    /// No traffic at all (`FMAINT`, or maintenance from the config, a tracked server or DNS).
    Maint,
}

impl AdminState {
    /// The word used by `set server ... state`.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Ready => "ready",
            AdminState::Drain => "drain",
            AdminState::Maint => "maint",
        }
    }

    /// Classifies `srv_admin_state`, a bit field: 0x01 forced maint, 0x02 inherited maint,
    /// 0x04 maint from the config, 0x08 forced drain, 0x10 inherited drain, 0x20 maint after a
    /// DNS resolution failure, 0x40 maint because the hostname is not resolved.
    pub fn from_admin_bits(bits: u32) -> Self {
        if bits & (0x01 | 0x02 | 0x04 | 0x20 | 0x40) != 0 {
            AdminState::Maint
        } else if bits & (0x08 | 0x10) != 0 {
            AdminState::Drain
        } else {
            AdminState::Ready
        }
    }
}

impl fmt::Display for AdminState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One server line of `show servers state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    /// `srv_name`.
    pub name: String,
    /// `srv_admin_state`, classified.
    pub admin: AdminState,
    /// `srv_admin_state` as HAProxy printed it.
    pub admin_bits: u32,
    /// `srv_op_state`: 0 stopped, 1 starting, 2 running, 3 stopping.
    pub op_state: u32,
}

/// A Runtime API call that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeApiError {
    /// The socket could not be reached (HAProxy down, wrong path, no permission).
    #[error(
        "HAProxy Runtime API {socket}: {cause} (is HAProxy running with `stats socket {socket} level admin`?)"
    )]
    Connect {
        /// The socket path.
        socket: String,
        /// The OS error.
        cause: String,
    },
    /// Reading or writing the socket failed or took too long.
    #[error("HAProxy Runtime API {socket}: `{command}`: {cause}")]
    Io {
        /// The socket path.
        socket: String,
        /// The command sent.
        command: String,
        /// What went wrong.
        cause: String,
    },
    /// HAProxy refused the command.
    #[error("HAProxy Runtime API {socket}: `{command}` refused: {answer}")]
    Refused {
        /// The socket path.
        socket: String,
        /// The command sent.
        command: String,
        /// HAProxy's answer, trimmed.
        answer: String,
    },
    /// The answer to `show servers state` could not be parsed.
    #[error("HAProxy Runtime API {socket}: unexpected `show servers state` answer: {why}")]
    Parse {
        /// The socket path.
        socket: String,
        /// What is wrong with it.
        why: String,
    },
}

/// HAProxy's Runtime API at one socket path.
#[derive(Debug, Clone)]
pub struct RuntimeApi {
    socket: PathBuf,
}

impl RuntimeApi {
    /// A client for the socket at `socket`; nothing is connected until a command is sent.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
        }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn socket_text(&self) -> String {
        self.socket.display().to_string()
    }

    /// Sends one command and returns HAProxy's whole answer.
    pub async fn command(&self, command: &str) -> Result<String, RuntimeApiError> {
        let io = |cause: String| RuntimeApiError::Io {
            socket: self.socket_text(),
            command: command.to_owned(),
            cause,
        };
        let exchange = async {
            let mut stream = tokio::net::UnixStream::connect(&self.socket)
                .await
                .map_err(|e| RuntimeApiError::Connect {
                    socket: self.socket_text(),
                    cause: e.to_string(),
                })?;
            stream
                .write_all(format!("{command}\n").as_bytes())
                .await
                .map_err(|e| io(e.to_string()))?;
            let mut answer = Vec::new();
            (&mut stream)
                .take(MAX_ANSWER)
                .read_to_end(&mut answer)
                .await
                .map_err(|e| io(e.to_string()))?;
            Ok(String::from_utf8_lossy(&answer).into_owned())
        };
        tokio::time::timeout(COMMAND_TIMEOUT, exchange)
            .await
            .map_err(|_| io(format!("no answer within {COMMAND_TIMEOUT:?}")))?
    }

    /// `set server <backend>/<server> state <state>`.
    pub async fn set_state(
        &self,
        backend: &str,
        server: &str,
        state: AdminState,
    ) -> Result<(), RuntimeApiError> {
        let command = format!("set server {backend}/{server} state {state}");
        let answer = self.command(&command).await?;
        let answer = answer.trim();
        if answer.is_empty() {
            Ok(())
        } else {
            Err(RuntimeApiError::Refused {
                socket: self.socket_text(),
                command,
                answer: answer.chars().take(200).collect(),
            })
        }
    }

    /// `show servers state <backend>`, parsed.
    pub async fn servers_state(&self, backend: &str) -> Result<Vec<ServerState>, RuntimeApiError> {
        let command = format!("show servers state {backend}");
        let answer = self.command(&command).await?;
        parse_servers_state(&answer).map_err(|why| {
            if answer.trim_start().starts_with('1') {
                RuntimeApiError::Parse {
                    socket: self.socket_text(),
                    why,
                }
            } else {
                RuntimeApiError::Refused {
                    socket: self.socket_text(),
                    command,
                    answer: answer.trim().chars().take(200).collect(),
                }
            }
        })
    }
}

/// Parses a `show servers state` answer (format version 1).
pub fn parse_servers_state(answer: &str) -> Result<Vec<ServerState>, String> {
    let mut lines = answer.lines().map(str::trim).filter(|l| !l.is_empty());
    match lines.next() {
        Some("1") => {}
        Some(other) => {
            return Err(format!(
                "expected format version 1, got {:?}",
                other.chars().take(80).collect::<String>()
            ));
        }
        None => return Err("the answer is empty".into()),
    }
    let header: Vec<&str> = lines
        .next()
        .and_then(|h| h.strip_prefix('#'))
        .ok_or("the column header is missing")?
        .split_whitespace()
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|c| *c == name)
            .ok_or(format!("no {name} column"))
    };
    let (name_i, admin_i, op_i) = (
        col("srv_name")?,
        col("srv_admin_state")?,
        col("srv_op_state")?,
    );
    let mut out = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let field = |i: usize| {
            fields
                .get(i)
                .copied()
                .ok_or(format!("a server line has {} fields", fields.len()))
        };
        let number = |i: usize| -> Result<u32, String> {
            let f = field(i)?;
            f.parse().map_err(|_| format!("{f:?} is not a number"))
        };
        let admin_bits = number(admin_i)?;
        out.push(ServerState {
            name: field(name_i)?.to_owned(),
            admin: AdminState::from_admin_bits(admin_bits),
            admin_bits,
            op_state: number(op_i)?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n3 be_mail 1 cas1-site1 127.0.0.1 2 0 1 1 1 1 0 2 0 0 0 0 - 18081 - 0 0 - - 0\n3 be_mail 2 cas1-site2 127.0.0.1 2 8 1 1 0 1 0 2 0 0 0 0 - 18082 - 0 0 - - 0\n3 be_mail 3 cas2-site2 127.0.0.1 0 1 1 1 0 1 0 0 0 0 0 0 - 18083 - 0 0 - - 0\n\n";

    #[test]
    fn parses_haproxy_2_6_show_servers_state() {
        let s = parse_servers_state(ANSWER).unwrap();
        let states: Vec<(&str, AdminState, u32)> = s
            .iter()
            .map(|s| (s.name.as_str(), s.admin, s.op_state))
            .collect();
        assert_eq!(
            states,
            [
                ("cas1-site1", AdminState::Ready, 2),
                ("cas1-site2", AdminState::Drain, 2),
                ("cas2-site2", AdminState::Maint, 0),
            ]
        );
    }

    #[test]
    fn refusals_and_garbage_are_errors() {
        assert!(parse_servers_state("Can't find backend.\n\n").is_err());
        assert!(parse_servers_state("").is_err());
        assert!(parse_servers_state("1\n# be_id srv_name\n3 x\n").is_err());
        let e = parse_servers_state("1\n# srv_name srv_admin_state srv_op_state\ns1 x 2\n");
        assert!(e.unwrap_err().contains("not a number"));
    }

    #[test]
    fn admin_bits_classify() {
        assert_eq!(AdminState::from_admin_bits(0), AdminState::Ready);
        assert_eq!(AdminState::from_admin_bits(0x08), AdminState::Drain);
        assert_eq!(AdminState::from_admin_bits(0x10), AdminState::Drain);
        assert_eq!(AdminState::from_admin_bits(0x09), AdminState::Maint);
        assert_eq!(AdminState::from_admin_bits(0x04), AdminState::Maint);
    }
}
