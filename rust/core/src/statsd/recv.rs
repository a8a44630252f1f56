//! Draining a non-blocking UDP socket, many datagrams per call.
//!
//! An event loop that reads one datagram per wakeup pays its whole turn for each one; these
//! read everything the kernel has queued (up to a bound) in one call, into the
//! newline-separated form [`StatsdParser::parse`](super::StatsdParser::parse) takes.

use std::io;
use std::mem::ManuallyDrop;
use std::net::UdpSocket;
use std::os::fd::{FromRawFd, RawFd};

/// The largest UDP payload (IPv4: 65 535 - 8 - 20), plus one byte to tell it is not cut.
const MAX_DATAGRAM: usize = 65_536;

/// The socket behind `fd`, borrowed: dropping it does not close the descriptor.
fn borrow(fd: RawFd) -> io::Result<ManuallyDrop<UdpSocket>> {
    if fd < 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad file descriptor {fd}"),
        ));
    }
    // SAFETY: the caller keeps `fd` open for the call; ManuallyDrop never closes it.
    Ok(ManuallyDrop::new(unsafe { UdpSocket::from_raw_fd(fd) }))
}

/// Reads datagrams from the non-blocking UDP socket `fd` into `out`, each followed by
/// `\n`, until the socket has none left, `max_datagrams` were read, or `out` grew by
/// `max_bytes` or more. Returns how many were read.
///
/// `fd` must be a non-blocking UDP socket that stays open for the call.
///
/// # Errors
/// A receive error other than "would block" / "interrupted", if it came before any
/// datagram was read (otherwise the datagrams read so far are returned and the error
/// shows again on the next call).
pub fn read_datagrams(
    fd: RawFd,
    out: &mut Vec<u8>,
    max_bytes: usize,
    max_datagrams: usize,
) -> io::Result<usize> {
    let sock = borrow(fd)?;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let start = out.len();
    let mut n = 0;
    while n < max_datagrams && out.len() - start < max_bytes {
        match sock.recv(&mut buf) {
            Ok(len) => {
                out.extend_from_slice(&buf[..len]);
                out.push(b'\n');
                n += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if n == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(n)
}

/// Reads and throws away up to `max_datagrams` datagrams from the non-blocking UDP socket
/// `fd` (when there is no room to keep them); returns how many.
///
/// # Errors
/// As [`read_datagrams`].
pub fn discard_datagrams(fd: RawFd, max_datagrams: usize) -> io::Result<usize> {
    let sock = borrow(fd)?;
    let mut buf = [0u8; 1];
    let mut n = 0;
    while n < max_datagrams {
        // A datagram longer than the buffer is still consumed whole.
        match sock.recv(&mut buf) {
            Ok(_) => n += 1,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if n == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    fn pair() -> (UdpSocket, UdpSocket) {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        (rx, tx)
    }

    #[test]
    fn reads_everything_queued_then_stops() {
        let (rx, tx) = pair();
        let mut out = Vec::new();
        assert_eq!(
            read_datagrams(rx.as_raw_fd(), &mut out, 1 << 20, 100).unwrap(),
            0
        );
        for i in 0..10 {
            tx.send(format!("m:{i}|c").as_bytes()).unwrap();
        }
        tx.send(b"a:1|c\nb:2|c").unwrap();
        let n = read_datagrams(rx.as_raw_fd(), &mut out, 1 << 20, 100).unwrap();
        assert_eq!(n, 11);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("m:0|c\nm:1|c\n"));
        assert!(text.ends_with("m:9|c\na:1|c\nb:2|c\n"));
        // the socket is still open and usable
        tx.send(b"x:1|g").unwrap();
        let mut out = Vec::new();
        assert_eq!(
            read_datagrams(rx.as_raw_fd(), &mut out, 1 << 20, 100).unwrap(),
            1
        );
        assert_eq!(out, b"x:1|g\n");
    }

    #[test]
    fn bounds_and_discard() {
        let (rx, tx) = pair();
        for _ in 0..20 {
            tx.send(b"0123456789").unwrap();
        }
        let mut out = Vec::new();
        assert_eq!(
            read_datagrams(rx.as_raw_fd(), &mut out, 1 << 20, 5).unwrap(),
            5
        );
        assert_eq!(
            read_datagrams(rx.as_raw_fd(), &mut out, 30, 100).unwrap(),
            3
        );
        assert_eq!(out.len(), 8 * 11);
        assert_eq!(discard_datagrams(rx.as_raw_fd(), 100).unwrap(), 12);
        assert_eq!(discard_datagrams(rx.as_raw_fd(), 100).unwrap(), 0);
    }

    #[test]
    fn a_bad_descriptor_is_an_error() {
        let mut out = Vec::new();
        assert!(read_datagrams(-1, &mut out, 100, 100).is_err());
        assert!(discard_datagrams(-1, 100).is_err());
        // an open descriptor that is not a socket
        let file = std::fs::File::open("/dev/null").unwrap();
        assert!(read_datagrams(file.as_raw_fd(), &mut out, 100, 100).is_err());
    }
}
