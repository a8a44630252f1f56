//! A minimal HTTP/1.1 client connection: the request pre-serialized once, the response head
//! parsed with `httparse`, the body framed by Content-Length, chunked encoding or the end of
//! the connection, and discarded as it arrives (only its length is kept).
//!
//! This is what wrk does, and what a load generator needs: per request one write, usually
//! one read, and no allocation — a general client (hyper) builds a request object, a
//! header map for the response and a body stream per request, which costs several times
//! the CPU on the generator side.

use std::io;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Response heads larger than this are refused (a read error).
const MAX_HEAD: usize = 64 * 1024;
/// Headers parsed per response head.
const MAX_HEADERS: usize = 100;
const BUF: usize = 16 * 1024;

/// A failed exchange: what was read of the body before it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Broken {
    pub bytes: u64,
}

/// A complete response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub bytes: u64,
    /// Whether the connection can carry another request.
    pub keep_alive: bool,
}

/// An open connection and its read buffer.
pub struct H1Conn {
    stream: TcpStream,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

impl H1Conn {
    /// Wraps a connected stream.
    pub fn new(stream: TcpStream) -> H1Conn {
        let _ = stream.set_nodelay(true);
        H1Conn {
            stream,
            buf: vec![0; BUF].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Whether the server has closed (or broken) the connection while it was idle.
    pub fn closed_by_peer(&self) -> bool {
        let mut probe = [0u8; 1];
        match self.stream.try_read(&mut probe) {
            // bytes nobody asked for, or the end of the stream: unusable either way
            Ok(_) => true,
            Err(e) => e.kind() != io::ErrorKind::WouldBlock,
        }
    }

    /// Reads more bytes into the buffer (making room first); `Ok(0)` at the end of stream.
    async fn fill(&mut self) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buf.len() < MAX_HEAD {
                let mut bigger = vec![0; (self.buf.len() * 2).min(MAX_HEAD)].into_boxed_slice();
                bigger[..self.end].copy_from_slice(&self.buf[..self.end]);
                self.buf = bigger;
            } else {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "head too large"));
            }
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    async fn fill_some(&mut self) -> io::Result<()> {
        if self.fill().await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }

    /// Skips `n` body bytes.
    async fn skip(&mut self, mut n: u64, read: &mut u64) -> io::Result<()> {
        loop {
            let take = ((self.end - self.start) as u64).min(n);
            self.start += take as usize;
            n -= take;
            *read += take;
            if n == 0 {
                return Ok(());
            }
            self.start = 0;
            self.end = 0;
            self.fill_some().await?;
        }
    }

    /// The next CRLF-terminated line (without the CRLF) as a range of the buffer.
    async fn line(&mut self) -> io::Result<(usize, usize)> {
        let mut from = self.start;
        loop {
            if let Some(i) = self.buf[from..self.end]
                .windows(2)
                .position(|w| w == b"\r\n")
            {
                let line = (self.start, from + i);
                self.start = from + i + 2;
                return Ok(line);
            }
            from = self.end.saturating_sub(1).max(self.start);
            let before = self.start;
            self.fill_some().await?;
            // the buffer may have been compacted
            from = from - before + self.start;
        }
    }

    async fn chunked(&mut self, read: &mut u64) -> io::Result<()> {
        loop {
            let (a, b) = self.line().await?;
            let size_text = self.buf[a..b].split(|&c| c == b';').next().unwrap_or(&[]);
            let size = std::str::from_utf8(size_text)
                .ok()
                .and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if size == 0 {
                // trailers, up to an empty line
                loop {
                    let (a, b) = self.line().await?;
                    if a == b {
                        return Ok(());
                    }
                }
            }
            self.skip(size, read).await?;
            let (a, b) = self.line().await?;
            if a != b {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "chunk without CRLF",
                ));
            }
        }
    }

    /// Sends `request` (a whole serialized request) and reads the whole response; `head`
    /// tells that the request was HEAD (its response has no body).
    pub async fn exchange(&mut self, request: &[u8], head: bool) -> Result<Response, Broken> {
        let mut read = 0u64;
        let broken = |read: u64| move |_| Broken { bytes: read };
        self.stream.write_all(request).await.map_err(broken(0))?;
        let (status, framing, keep_alive) = loop {
            let parsed = {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut resp = httparse::Response::new(&mut headers);
                match resp.parse(&self.buf[self.start..self.end]) {
                    Ok(httparse::Status::Complete(len)) => Some((len, head_info(&resp, head))),
                    Ok(httparse::Status::Partial) => None,
                    Err(_) => return Err(Broken { bytes: 0 }),
                }
            };
            match parsed {
                Some((len, info)) => {
                    self.start += len;
                    // interim responses (100 Continue, 103 Early Hints) precede the real one
                    if (100..200).contains(&info.0) && info.0 != 101 {
                        continue;
                    }
                    break info;
                }
                None => self.fill_some().await.map_err(broken(0))?,
            }
        };
        match framing {
            Framing::None => {}
            Framing::Length(n) => self.skip(n, &mut read).await.map_err(broken(read))?,
            Framing::Chunked => self.chunked(&mut read).await.map_err(broken(read))?,
            Framing::UntilClose => loop {
                read += (self.end - self.start) as u64;
                self.start = 0;
                self.end = 0;
                match self.fill().await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(_) => return Err(Broken { bytes: read }),
                }
            },
        }
        let clean = self.start == self.end;
        Ok(Response {
            status,
            bytes: read,
            // leftover bytes after a response are not an answer to anything we sent
            keep_alive: keep_alive && clean && !matches!(framing, Framing::UntilClose),
        })
    }
}

/// (status, body framing, keep-alive) from a parsed response head.
fn head_info(resp: &httparse::Response<'_, '_>, head: bool) -> (u16, Framing, bool) {
    let status = resp.code.unwrap_or(0);
    let http10 = resp.version == Some(0);
    let mut keep_alive = !http10;
    let mut length = None;
    let mut chunked = false;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok());
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = h
                .value
                .rsplit(|&c| c == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&c| c == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }
    let framing = if head || status == 204 || status == 304 || (100..200).contains(&status) {
        Framing::None
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    (status, framing, keep_alive)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Serves `replies` in order on one connection (each after reading one request head),
    /// returning what the client got for each.
    async fn exchange_all(
        replies: Vec<&'static [u8]>,
        head: bool,
    ) -> Vec<Result<Response, Broken>> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let n = replies.len();
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            for reply in replies {
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let k = sock.read(&mut buf).await.unwrap();
                    if k == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..k]);
                }
                // dribble the reply a few bytes at a time to exercise partial reads
                for piece in reply.chunks(7) {
                    sock.write_all(piece).await.unwrap();
                    sock.flush().await.unwrap();
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
            }
        });
        let mut conn = H1Conn::new(TcpStream::connect(addr).await.unwrap());
        let mut out = Vec::new();
        for _ in 0..n {
            let r = conn
                .exchange(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", head)
                .await;
            let stop = !matches!(
                r,
                Ok(Response {
                    keep_alive: true,
                    ..
                })
            );
            out.push(r);
            if stop {
                break;
            }
        }
        server.abort();
        out
    }

    #[tokio::test]
    async fn content_length_and_keep_alive() {
        let r = exchange_all(
            vec![
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            ],
            false,
        )
        .await;
        assert_eq!(
            r,
            vec![
                Ok(Response {
                    status: 200,
                    bytes: 5,
                    keep_alive: true
                }),
                Ok(Response {
                    status: 404,
                    bytes: 0,
                    keep_alive: true
                }),
            ]
        );
    }

    #[tokio::test]
    async fn chunked_with_extensions_and_trailers() {
        let r = exchange_all(
            vec![
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            ],
            false,
        )
        .await;
        assert_eq!(
            r,
            vec![
                Ok(Response {
                    status: 200,
                    bytes: 15,
                    keep_alive: true
                }),
                Ok(Response {
                    status: 200,
                    bytes: 0,
                    keep_alive: true
                }),
            ]
        );
    }

    #[tokio::test]
    async fn interim_responses_are_skipped_and_close_is_honoured() {
        let r = exchange_all(
            vec![b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"],
            false,
        )
        .await;
        assert_eq!(
            r,
            vec![Ok(Response {
                status: 201,
                bytes: 2,
                keep_alive: false
            })]
        );
    }

    #[tokio::test]
    async fn body_until_close_and_http10() {
        let r = exchange_all(vec![b"HTTP/1.0 200 OK\r\n\r\nall of it"], false).await;
        assert_eq!(
            r,
            vec![Ok(Response {
                status: 200,
                bytes: 9,
                keep_alive: false
            })]
        );
    }

    #[tokio::test]
    async fn head_and_204_have_no_body() {
        let r = exchange_all(
            vec![
                b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n",
                b"HTTP/1.1 204 No Content\r\n\r\n",
            ],
            true,
        )
        .await;
        assert_eq!(
            r,
            vec![
                Ok(Response {
                    status: 200,
                    bytes: 0,
                    keep_alive: true
                }),
                Ok(Response {
                    status: 204,
                    bytes: 0,
                    keep_alive: true
                }),
            ]
        );
    }

    #[tokio::test]
    async fn truncated_body_and_garbage_are_broken() {
        let r = exchange_all(
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort"],
            false,
        )
        .await;
        assert_eq!(r, vec![Err(Broken { bytes: 5 })]);
        let r = exchange_all(vec![b"SSH-2.0-OpenSSH\r\n\r\n"], false).await;
        assert_eq!(r, vec![Err(Broken { bytes: 0 })]);
        let r = exchange_all(
            vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"],
            false,
        )
        .await;
        assert_eq!(r, vec![Err(Broken { bytes: 0 })]);
    }
}
