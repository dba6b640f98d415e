//! `tcp`: a TCP connect to the server's address and the check's port (SMTP, IMAP, RPC...).

use sitewarden_shared::ErrorClass;

use super::Finding;
use crate::config::Probe;

pub async fn probe(probe: &Probe) -> Finding {
    let target = (probe.connect_host.as_str(), probe.port);
    match tokio::time::timeout(probe.timeout, tokio::net::TcpStream::connect(target)).await {
        Ok(Ok(_stream)) => Finding {
            pass: true,
            ..Default::default()
        },
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Finding::fail(
            ErrorClass::ConnectRefused,
            format!("connection refused on port {}", probe.port),
        ),
        Ok(Err(e)) => Finding::fail(
            ErrorClass::Connect,
            format!("connect to port {} failed: {e}", probe.port),
        ),
        Err(_) => Finding::fail(
            ErrorClass::Timeout,
            format!("no connection within {}ms", probe.timeout.as_millis()),
        ),
    }
}
