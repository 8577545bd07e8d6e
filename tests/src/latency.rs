//! Latency checks made from outside: percentiles of a client's answers, and clients that stand
//! in for remote ones.

use std::time::Duration;

/// The 99th percentile of `v` (the nearest-rank one; zero for no values).
pub fn p99(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v.get((v.len() * 99).div_ceil(100).saturating_sub(1)).copied().unwrap_or_default()
}

/// Puts the calling thread at the lowest CPU priority there is (`SCHED_IDLE`). A test's load or
/// attacking clients stand in for clients on other machines: on one 2-core box their own CPU
/// would otherwise be taken from the receiver and the client being measured, which a remote
/// client cannot do. Nice 19 is not enough for that: Linux's scheduler (EEVDF, 6.6 on) lets a
/// running nice-19 thread finish its time slice (1.4 ms on 2 cores) before a thread that wakes
/// gets the core, while any thread that wakes preempts a `SCHED_IDLE` one at once.
pub fn as_remote_client() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: with pid 0, sched_setscheduler changes the calling thread only; `param` outlives
    // the call.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    assert_eq!(rc, 0, "sched_setscheduler: {}", std::io::Error::last_os_error());
}

/// Gives the calling thread the shortest time slice Linux allows (100 µs, Linux 6.12 on; older
/// kernels ignore it), as the receiver's async threads have. The client whose latency a test
/// measures stands in for a client on another machine, which wakes on its own core when its
/// answer arrives: here it shares two cores with the receiver, and with the default slice (1.4
/// ms) it waited behind the receiver's threads for up to a slice at each answer, which a remote
/// client does not.
pub fn as_measured_client() {
    /// sched_setattr(2)'s `struct sched_attr`, first version (48 bytes).
    #[repr(C)]
    struct Attr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        runtime: u64,
        deadline: u64,
        period: u64,
    }
    let attr = Attr { size: 48, policy: 0, flags: 0, nice: 0, priority: 0, runtime: 100_000, deadline: 0, period: 0 };
    // SAFETY: with pid 0, sched_setattr changes the calling thread only; it reads `attr`, of the
    // size it declares, during the call.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const Attr, 0) };
    if rc != 0 {
        eprintln!("the measured client keeps the default time slice: {}", std::io::Error::last_os_error());
    }
}

/// A keep-alive HTTP/1.1 connection that times each answer twice: by the client's clock, from
/// just before the request is written to the moment this thread has read the whole answer,
/// and by the kernel, to the moment the answer's last bytes arrived at the socket (its
/// software receive timestamp, `SO_TIMESTAMPNS`). The second leaves out the time this thread
/// waited for a core once the answer was there: a client on another machine does not share
/// the receiver's cores, a test's client on a 2-core box does.
pub struct StampedConn {
    stream: std::net::TcpStream,
    buf: Vec<u8>,
}

/// An answer read by [`StampedConn`].
#[derive(Debug)]
pub struct Stamped {
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// By the client's clock.
    pub client: Duration,
    /// Until the kernel received the answer's last bytes.
    pub arrival: Duration,
}

impl Stamped {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

impl StampedConn {
    /// Connects to `addr` (`host:port`) with receive timestamps on.
    pub fn connect(addr: &str) -> std::io::Result<StampedConn> {
        use std::os::fd::AsRawFd;
        let stream = std::net::TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        let on: libc::c_int = 1;
        // SAFETY: setsockopt reads an int of the size given from a live local.
        let rc = unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(StampedConn { stream, buf: Vec::new() })
    }

    /// Sends `method path` with `headers` and `body` (a Content-Length is added) and reads the
    /// answer, which must carry a Content-Length. Panics if the kernel gives no receive
    /// timestamp (Linux does on every socket that asks).
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Stamped> {
        use std::io::Write;
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: ringest\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut req = req.into_bytes();
        req.extend_from_slice(body);
        self.buf.clear();
        let sent_at = realtime_now();
        let start = std::time::Instant::now();
        self.stream.write_all(&req)?;
        let mut arrived_at: Option<Duration> = None;
        loop {
            if let Some((status, headers, head_len, body_len)) = parse_head(&self.buf)?
                && self.buf.len() >= head_len + body_len
            {
                let client = start.elapsed();
                // Not an error to retry: without timestamps no answer can be timed.
                let arrived_at = arrived_at.expect("the kernel gave no receive timestamp (SO_TIMESTAMPNS)");
                let arrival = arrived_at.checked_sub(sent_at).unwrap_or_default();
                let body = self.buf[head_len..head_len + body_len].to_vec();
                return Ok(Stamped { status, headers, body, client, arrival });
            }
            let (n, stamp) = self.recv()?;
            if n == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
            }
            arrived_at = stamp.or(arrived_at);
        }
    }

    /// One `recvmsg` into the buffer: the bytes read and the receive timestamp of the last
    /// segment among them.
    fn recv(&mut self) -> std::io::Result<(usize, Option<Duration>)> {
        use std::os::fd::AsRawFd;
        let mut data = [0u8; 4096];
        // Room for one timespec control message, aligned as cmsghdr needs.
        let mut control = [0u64; 8];
        let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: data.len() };
        // SAFETY: a zeroed msghdr is a valid empty one; its pointers are set to live locals
        // below, of the lengths given.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: recvmsg writes at most the lengths `msg` declares into buffers that outlive
        // the call.
        let n = unsafe { libc::recvmsg(self.stream.as_raw_fd(), &mut msg, 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let n = n as usize;
        self.buf.extend_from_slice(&data[..n]);
        let mut stamp = None;
        // SAFETY: the CMSG_* walk stays within `msg_controllen` bytes that recvmsg filled.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                    let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::timespec>());
                    stamp = Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32));
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        Ok((n, stamp))
    }
}

/// `CLOCK_REALTIME` now, the clock of the kernel's receive timestamps.
fn realtime_now() -> Duration {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default()
}

/// A response head at the start of `buf`, once complete: status, headers, its length and the
/// body's (from Content-Length).
type Head = (u16, Vec<(String, String)>, usize, usize);

fn parse_head(buf: &[u8]) -> std::io::Result<Option<Head>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { return Ok(None) };
    let text = std::str::from_utf8(&buf[..end]).map_err(std::io::Error::other)?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .ok_or_else(|| std::io::Error::other("an answer without a Content-Length"))?;
    Ok(Some((status, headers, end + 4, len)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A server that answers each request after `delay`, then once more at once.
    fn answering(delay: Duration) -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            for wait in [delay, Duration::ZERO] {
                let mut got = Vec::new();
                let mut buf = [0u8; 1024];
                while !got.ends_with(b"body") {
                    let n = c.read(&mut buf).unwrap();
                    assert!(n > 0, "the request ended early");
                    got.extend_from_slice(&buf[..n]);
                }
                std::thread::sleep(wait);
                c.write_all(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 4\r\n\r\nbusy")
                    .unwrap();
            }
        });
        addr
    }

    #[test]
    fn answers_are_timed_at_their_arrival_and_by_the_client() {
        let mut c = StampedConn::connect(&answering(Duration::from_millis(50))).unwrap();
        let slow = c.request("POST", "/", &[("X-A", "b")], b"body").unwrap();
        assert_eq!((slow.status, slow.header("retry-after"), &slow.body[..]), (503, Some("1"), &b"busy"[..]));
        assert!(slow.arrival >= Duration::from_millis(50), "{:?}", slow.arrival);
        assert!(slow.client >= slow.arrival, "{slow:?}");
        // The same connection, kept alive; the answer's arrival is its own, not the first's.
        let fast = c.request("POST", "/", &[], b"body").unwrap();
        assert!(fast.arrival < Duration::from_millis(50), "{fast:?}");
    }
}
