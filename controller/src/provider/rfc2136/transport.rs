//! DNS messages over UDP and TCP: one request out, its response back, within a timeout.
//!
//! Used by the RFC 2136 provider (queries and UPDATEs to the primary, over TCP) and by the
//! propagation watch (queries to every authoritative server, UDP first and TCP when the answer
//! is truncated). Deliberately small: no retries (callers own their retry policy), no caching, no
//! global state. A response is only accepted when its id and question match the request, so a
//! stray or spoofed datagram is ignored rather than believed. Many queries can share one TCP
//! connection, pipelined (RFC 7766 §6.2.1.1): all sent at once, the answers matched by id in
//! whatever order the server sends them ([`tcp_pipelined`]).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// The UDP payload size we advertise with EDNS (the DNS flag day 2020 value).
pub const EDNS_PAYLOAD: u16 = 1232;

/// Why an exchange failed. Messages name the server; they never contain key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// No (matching) response before the timeout.
    #[error("no answer from {server} within {timeout:?}")]
    Timeout {
        /// The server asked.
        server: SocketAddr,
        /// How long we waited.
        timeout: Duration,
    },
    /// A socket error (refused, reset, unreachable).
    #[error("{server}: {detail}")]
    Io {
        /// The server asked.
        server: SocketAddr,
        /// What the socket said.
        detail: String,
    },
    /// The response could not be parsed or does not belong to the request.
    #[error("{server} sent a response that cannot be used: {detail}")]
    Garbled {
        /// The server asked.
        server: SocketAddr,
        /// Why it cannot be used.
        detail: String,
    },
}

/// Which transports a query may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP only (the RFC 2136 provider: reliable, no truncation, no retransmission ambiguity).
    Tcp,
    /// UDP, and TCP again when the UDP answer is truncated (what resolvers do).
    UdpThenTcp,
}

/// A query message for `name`/`rtype` with a random id, EDNS and the given RD bit.
pub fn query_message(name: &Name, rtype: RecordType, recursion_desired: bool) -> Message {
    let mut m = Message::query();
    m.metadata.id = rand::random();
    m.metadata.op_code = OpCode::Query;
    m.metadata.recursion_desired = recursion_desired;
    let mut q = Query::query(name.clone(), rtype);
    q.set_query_class(DNSClass::IN);
    m.add_query(q);
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    m.edns = Some(edns);
    m
}

/// Asks `server` one question and returns the parsed response.
pub async fn query(
    server: SocketAddr,
    request: &Message,
    transport: Transport,
    timeout: Duration,
) -> Result<Message, ExchangeError> {
    let bytes = request.to_vec().map_err(|e| ExchangeError::Garbled {
        server,
        detail: format!("cannot encode the query: {e}"),
    })?;
    if transport == Transport::UdpThenTcp {
        let raw = udp(server, &bytes, request.metadata.id, timeout).await?;
        let response = parse_matching(server, request, &raw)?;
        if !response.metadata.truncation {
            return Ok(response);
        }
    }
    let raw = tcp(server, &bytes, timeout).await?;
    parse_matching(server, request, &raw)
}

/// Parses `raw` and checks it answers `request` (same id, a response, same question).
pub fn parse_matching(
    server: SocketAddr,
    request: &Message,
    raw: &[u8],
) -> Result<Message, ExchangeError> {
    let response = Message::from_vec(raw).map_err(|e| ExchangeError::Garbled {
        server,
        detail: e.to_string(),
    })?;
    let garbled = |detail: &str| ExchangeError::Garbled {
        server,
        detail: detail.to_owned(),
    };
    if response.metadata.id != request.metadata.id {
        return Err(garbled("its id does not match the request"));
    }
    if response.metadata.message_type != MessageType::Response {
        return Err(garbled("it is not a response"));
    }
    // Servers may omit the question in some error responses (e.g. FORMERR, NOTAUTH); when it is
    // present it must be ours.
    if !response.queries.is_empty() {
        let same = response.queries.len() == request.queries.len()
            && response
                .queries
                .iter()
                .zip(&request.queries)
                // Name equality is case-insensitive (0x20 randomisation stays possible).
                .all(|(a, b)| a.name() == b.name() && a.query_type() == b.query_type());
        if !same {
            return Err(garbled("its question is not the one asked"));
        }
    }
    Ok(response)
}

/// Sends `request` over UDP and waits for a datagram with id `id` (others are ignored).
async fn udp(
    server: SocketAddr,
    request: &[u8],
    id: u16,
    timeout: Duration,
) -> Result<Vec<u8>, ExchangeError> {
    let io = |e: std::io::Error| ExchangeError::Io {
        server,
        detail: e.to_string(),
    };
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let exchange = async {
        let socket = UdpSocket::bind(local).await.map_err(io)?;
        socket.connect(server).await.map_err(io)?;
        socket.send(request).await.map_err(io)?;
        let mut buf = vec![0u8; 65_535];
        loop {
            let n = socket.recv(&mut buf).await.map_err(io)?;
            if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
                buf.truncate(n);
                return Ok(buf);
            }
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ExchangeError::Timeout { server, timeout })?
}

/// Sends each request over one TCP connection, in order, and returns their responses.
pub async fn tcp_many(
    server: SocketAddr,
    requests: &[Vec<u8>],
    timeout: Duration,
) -> Result<Vec<Vec<u8>>, ExchangeError> {
    let io = |e: std::io::Error| ExchangeError::Io {
        server,
        detail: e.to_string(),
    };
    let exchange = async {
        let mut stream = TcpStream::connect(server).await.map_err(io)?;
        let mut out = Vec::with_capacity(requests.len());
        for request in requests {
            let len = u16::try_from(request.len()).map_err(|_| ExchangeError::Garbled {
                server,
                detail: "the request is longer than 65,535 bytes".into(),
            })?;
            let mut framed = Vec::with_capacity(request.len() + 2);
            framed.extend_from_slice(&len.to_be_bytes());
            framed.extend_from_slice(request);
            stream.write_all(&framed).await.map_err(io)?;
            let n = stream.read_u16().await.map_err(io)?;
            let mut buf = vec![0u8; usize::from(n)];
            stream.read_exact(&mut buf).await.map_err(io)?;
            out.push(buf);
        }
        Ok(out)
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ExchangeError::Timeout { server, timeout })?
}

/// Sends every request over one TCP connection without waiting between them, and returns their
/// responses in the order of the requests, matched by message id (servers may answer pipelined
/// queries out of order). Each request must carry its own id.
pub async fn tcp_pipelined(
    server: SocketAddr,
    requests: &[Vec<u8>],
    timeout: Duration,
) -> Result<Vec<Vec<u8>>, ExchangeError> {
    let garbled = |detail: &str| ExchangeError::Garbled {
        server,
        detail: detail.to_owned(),
    };
    let id_of = |m: &[u8]| match m {
        [a, b, ..] => Some(u16::from_be_bytes([*a, *b])),
        _ => None,
    };
    let mut index = std::collections::HashMap::with_capacity(requests.len());
    let mut framed = Vec::new();
    for (i, request) in requests.iter().enumerate() {
        let id = id_of(request).ok_or_else(|| garbled("a request is shorter than a header"))?;
        if index.insert(id, i).is_some() {
            return Err(garbled("two pipelined requests carry the same id"));
        }
        let len = u16::try_from(request.len())
            .map_err(|_| garbled("a request is longer than 65,535 bytes"))?;
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(request);
    }
    let io = |e: std::io::Error| ExchangeError::Io {
        server,
        detail: e.to_string(),
    };
    let exchange = async {
        let stream = TcpStream::connect(server).await.map_err(io)?;
        let (mut reader, mut writer) = stream.into_split();
        let send = async {
            writer.write_all(&framed).await.map_err(io)?;
            writer.flush().await.map_err(io)
        };
        let receive = async {
            let mut out: Vec<Option<Vec<u8>>> = vec![None; requests.len()];
            let mut left = requests.len();
            while left > 0 {
                let n = reader.read_u16().await.map_err(io)?;
                let mut buf = vec![0u8; usize::from(n)];
                reader.read_exact(&mut buf).await.map_err(io)?;
                // An answer to nothing we asked (or asked twice) is ignored, not believed.
                if let Some(slot) = id_of(&buf)
                    .and_then(|id| index.get(&id))
                    .and_then(|i| out.get_mut(*i))
                    .filter(|slot| slot.is_none())
                {
                    *slot = Some(buf);
                    left -= 1;
                }
            }
            Ok(out.into_iter().flatten().collect())
        };
        let ((), out) = tokio::try_join!(send, receive)?;
        Ok(out)
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ExchangeError::Timeout { server, timeout })?
}

/// Sends one request over TCP and returns its response.
pub async fn tcp(
    server: SocketAddr,
    request: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, ExchangeError> {
    let mut all = tcp_many(server, &[request.to_vec()], timeout).await?;
    all.pop().ok_or_else(|| ExchangeError::Garbled {
        server,
        detail: "no response".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response_to(request: &Message) -> Message {
        let mut r = request.clone();
        r.metadata.message_type = MessageType::Response;
        r
    }

    #[test]
    fn a_response_must_match_id_and_question() {
        let server: SocketAddr = "127.0.0.1:53".parse().unwrap();
        let name = Name::from_ascii("mail.example.com.").unwrap();
        let q = query_message(&name, RecordType::CNAME, false);
        let ok = response_to(&q);
        assert!(parse_matching(server, &q, &ok.to_vec().unwrap()).is_ok());

        let mut other_id = ok.clone();
        other_id.metadata.id = q.metadata.id.wrapping_add(1);
        assert!(parse_matching(server, &q, &other_id.to_vec().unwrap()).is_err());

        let other = query_message(
            &Name::from_ascii("owa.example.com.").unwrap(),
            RecordType::CNAME,
            false,
        );
        let mut wrong_question = response_to(&other);
        wrong_question.metadata.id = q.metadata.id;
        assert!(parse_matching(server, &q, &wrong_question.to_vec().unwrap()).is_err());

        assert!(
            parse_matching(server, &q, &q.to_vec().unwrap()).is_err(),
            "not a response"
        );
        assert!(parse_matching(server, &q, b"\x01").is_err(), "garbage");
    }

    /// A TCP server that reads `n` framed requests and answers them in reverse order, plus one
    /// answer with an id nobody asked for.
    async fn reversing_server(n: usize) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            for _ in 0..n {
                let len = s.read_u16().await.unwrap();
                let mut buf = vec![0u8; usize::from(len)];
                s.read_exact(&mut buf).await.unwrap();
                let mut m = Message::from_vec(&buf).unwrap();
                m.metadata.message_type = MessageType::Response;
                got.push(m.to_vec().unwrap());
            }
            let mut stray = Message::from_vec(&got[0]).unwrap();
            stray.metadata.id = 0xdead;
            got.push(stray.to_vec().unwrap());
            for answer in got.iter().rev() {
                s.write_u16(answer.len() as u16).await.unwrap();
                s.write_all(answer).await.unwrap();
            }
        });
        addr
    }

    #[tokio::test]
    async fn pipelined_answers_are_matched_by_id_whatever_their_order() {
        let questions: Vec<Message> = (0..50u16)
            .map(|i| {
                let name = Name::from_ascii(format!("svc{i}.example.com.")).unwrap();
                let mut q = query_message(&name, RecordType::CNAME, false);
                q.metadata.id = 1000 + i;
                q
            })
            .collect();
        let bytes: Vec<Vec<u8>> = questions.iter().map(|q| q.to_vec().unwrap()).collect();
        let server = reversing_server(questions.len()).await;
        let answers = tcp_pipelined(server, &bytes, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(answers.len(), 50);
        for (q, a) in questions.iter().zip(&answers) {
            assert!(parse_matching(server, q, a).is_ok());
        }
        let twice = vec![bytes[0].clone(), bytes[0].clone()];
        let err = tcp_pipelined(server, &twice, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("same id"), "{err}");
    }

    #[tokio::test]
    async fn a_silent_server_times_out_and_a_closed_port_is_an_io_error() {
        // A bound socket that never answers.
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let name = Name::from_ascii("mail.example.com.").unwrap();
        let q = query_message(&name, RecordType::CNAME, false);
        let err = query(addr, &q, Transport::UdpThenTcp, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(err, ExchangeError::Timeout { .. }), "{err}");

        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let err = query(addr, &q, Transport::Tcp, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(matches!(err, ExchangeError::Io { .. }), "{err}");
    }
}
