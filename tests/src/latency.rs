//! Latency checks made from outside: percentiles of a client's answers, and clients that stand
//! in for remote ones.

use std::time::Duration;

use ringest_loadgen::http::{HttpResponse, read_response, request_head};

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
    stream: std::io::BufReader<StampedStream>,
}

/// An answer read by [`StampedConn`], with its two timings.
#[derive(Debug)]
pub struct Stamped {
    pub answer: HttpResponse,
    /// By the client's clock.
    pub client: Duration,
    /// Until the kernel received the answer's last bytes.
    pub arrival: Duration,
}

impl StampedConn {
    /// Connects to `addr` (`host:port`) with receive timestamps on.
    pub fn connect(addr: &str) -> std::io::Result<StampedConn> {
        use std::os::fd::AsRawFd;
        let socket = std::net::TcpStream::connect(addr)?;
        socket.set_nodelay(true)?;
        socket.set_read_timeout(Some(Duration::from_secs(120)))?;
        let on: libc::c_int = 1;
        // SAFETY: setsockopt reads an int of the size given from a live local.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(StampedConn { stream: std::io::BufReader::new(StampedStream { socket, last: None }) })
    }

    /// Sends a request as the load generator's client does and reads the answer. Panics if the
    /// kernel gives no receive timestamp (Linux does on every socket that asks).
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Stamped> {
        use std::io::Write;
        let mut req = request_head(method, path, "ringest", headers, body.len()).into_bytes();
        req.extend_from_slice(body);
        self.stream.get_mut().last = None;
        let sent_at = realtime_now();
        let start = std::time::Instant::now();
        self.stream.get_mut().socket.write_all(&req)?;
        let answer = read_response(&mut self.stream, method == "HEAD")?;
        let client = start.elapsed();
        // Not an error to retry: without timestamps no answer can be timed.
        let arrived_at = self.stream.get_ref().last.expect("the kernel gave no receive timestamp (SO_TIMESTAMPNS)");
        Ok(Stamped { answer, client, arrival: arrived_at.checked_sub(sent_at).unwrap_or_default() })
    }
}

/// A socket read with `recvmsg`, keeping the receive timestamp of the last segment read.
struct StampedStream {
    socket: std::net::TcpStream,
    last: Option<Duration>,
}

impl std::io::Read for StampedStream {
    fn read(&mut self, data: &mut [u8]) -> std::io::Result<usize> {
        use std::os::fd::AsRawFd;
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
        let n = unsafe { libc::recvmsg(self.socket.as_raw_fd(), &mut msg, 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the CMSG_* walk stays within `msg_controllen` bytes that recvmsg filled.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                    let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::timespec>());
                    self.last = Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32));
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        Ok(n as usize)
    }
}

/// `CLOCK_REALTIME` now, the clock of the kernel's receive timestamps.
fn realtime_now() -> Duration {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default()
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
        let a = &slow.answer;
        assert_eq!((a.status, a.header("retry-after"), &a.body[..]), (503, Some("1"), &b"busy"[..]));
        assert!(slow.arrival >= Duration::from_millis(50), "{:?}", slow.arrival);
        assert!(slow.client >= slow.arrival, "{slow:?}");
        // The same connection, kept alive; the answer's arrival is its own, not the first's.
        let fast = c.request("POST", "/", &[], b"body").unwrap();
        assert!(fast.arrival < Duration::from_millis(50), "{fast:?}");
    }
}
