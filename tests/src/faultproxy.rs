//! A fault-injecting TCP proxy for object-storage tests: [`FaultProxy`] listens on a free
//! loopback port and forwards each connection to an upstream (e.g. [`crate::s3::Moto`]) with
//! plain std threads. The test thread switches its [`Mode`] while traffic flows to produce
//! refused connections, cut connections, a hung endpoint, a slow link, flaky resets, hung
//! requests, or a share of all requests failing in turns (reset, unanswered, S3's SlowDown).
//!
//! Every thread polls with short socket timeouts and a stop flag, so dropping the proxy ends
//! and joins all of them within a fraction of a second, whatever the peers do.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How the proxy treats traffic. Changes apply at once to new and existing connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward both ways.
    Pass,
    /// The listening socket is closed, so `connect()` gets `ECONNREFUSED`; existing
    /// connections are cut (shut down both ways, then reset). Switching to any other mode
    /// binds the same port again.
    Refuse,
    /// Connections are accepted (and connected upstream) but nothing is forwarded either
    /// way, on new and existing connections: a hung endpoint or a network partition. Bytes
    /// stay in the socket buffers; when the mode changes they flow again, like a healed
    /// partition (a client that gave up meanwhile may still have its request delivered).
    Blackhole,
    /// Forward, but sleep `delay_per_chunk` before forwarding each chunk read (up to 16 KiB),
    /// in both directions.
    Slow {
        /// Delay before each forwarded chunk.
        delay_per_chunk: Duration,
    },
    /// Every `every`-th connection accepted since this mode was set (the `every`-th,
    /// `2*every`-th, …) is reset (RST) once its first bytes arrived (or after 1 s), without
    /// contacting upstream; the others pass. `every: 1` resets all, `0` is treated as 1.
    Flaky {
        /// Period of the resets.
        every: u32,
    },
    /// Every `every`-th connection accepted since this mode was set is held open and silent
    /// (what it sends is read and dropped, nothing is answered, upstream is never contacted)
    /// until the client closes it: a request that times out. The others pass.
    Hang {
        /// Period of the hung connections.
        every: u32,
    },
    /// Faults per request rather than per connection (a client reusing its connections meets
    /// them too): every `every`-th chunk sent by any client (a request, or part of a large
    /// one's body) is not forwarded, and its connection is in turn reset, held silent until
    /// the client gives up (a timeout), or answered S3's `503 SlowDown` error and closed.
    Chaos {
        /// Period of the faulty chunks.
        every: u32,
    },
}

/// S3's answer to a client that should slow down (a retryable server error).
fn slow_down() -> String {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
                <Message>Please reduce your request rate.</Message></Error>";
    format!(
        "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

const POLL: Duration = Duration::from_millis(20);
const CHUNK: usize = 16 * 1024;

struct State {
    mode: Mode,
    listener: Option<TcpListener>,
    flaky_seen: u32,
    next_id: u64,
    /// Clones of the live connections' sockets (client first, then upstream), to cut them.
    conns: HashMap<u64, Vec<TcpStream>>,
}

impl State {
    /// `fault` for every `every`-th connection accepted since the mode was set, else forward.
    fn every_nth(&mut self, every: u32, fault: Action) -> Action {
        self.flaky_seen += 1;
        if self.flaky_seen.is_multiple_of(every.max(1)) { fault } else { Action::Forward }
    }
}

struct Shared {
    state: Mutex<State>,
    stop: AtomicBool,
    accepted: AtomicU64,
    resets: AtomicU64,
    hangs: AtomicU64,
    errors: AtomicU64,
    /// Chunks sent by clients in [`Mode::Chaos`], to pick the faulty ones.
    chunks: AtomicU64,
    threads: Mutex<Vec<JoinHandle<()>>>,
    addr: SocketAddr,
    upstream: SocketAddr,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn mode(&self) -> Mode {
        self.lock().mode
    }

    /// Waits while the mode is `Blackhole`; false if the proxy is stopping.
    fn wait_flowing(&self) -> bool {
        while !self.stopped() {
            if self.mode() != Mode::Blackhole {
                return true;
            }
            thread::sleep(POLL);
        }
        false
    }

    /// Sleeps `d` in short steps; false if the proxy is stopping.
    fn sleep(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        while !self.stopped() {
            let now = Instant::now();
            if now >= end {
                return true;
            }
            thread::sleep((end - now).min(POLL));
        }
        false
    }
}

/// A fault-injecting TCP proxy on `127.0.0.1`; stops and joins its threads on drop.
pub struct FaultProxy {
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.shared.addr)
            .field("upstream", &self.shared.upstream)
            .field("mode", &self.shared.mode())
            .finish()
    }
}

impl FaultProxy {
    /// Starts a proxy in [`Mode::Pass`] on a free loopback port, forwarding to `upstream`.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        // Below the ephemeral range, so no outgoing connection takes it while in Refuse mode. A
        // port found free can be taken before it is bound here (other tests start processes on
        // ports of their own): another is tried then.
        let listener = (0..20)
            .find_map(|_| TcpListener::bind(("127.0.0.1", crate::process::free_port())).ok())
            .expect("bind fault proxy");
        listener.set_nonblocking(true).expect("nonblocking listener");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                mode: Mode::Pass,
                listener: Some(listener),
                flaky_seen: 0,
                next_id: 0,
                conns: HashMap::new(),
            }),
            stop: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            hangs: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            chunks: AtomicU64::new(0),
            threads: Mutex::new(Vec::new()),
            addr,
            upstream,
        });
        let sh = shared.clone();
        let accept = thread::Builder::new()
            .name(format!("faultproxy-accept-{}", addr.port()))
            .spawn(move || accept_loop(sh))
            .expect("spawn accept thread");
        FaultProxy { shared, accept: Some(accept) }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `127.0.0.1:PORT` of [`FaultProxy::addr`].
    pub fn endpoint(&self) -> String {
        self.shared.addr.to_string()
    }

    /// The upstream address.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.shared.mode()
    }

    /// Switches mode; effective when this returns (for `Refuse`: the port is closed and the
    /// existing connections are cut; leaving `Refuse`: the port is bound again, which panics
    /// if another process took it meanwhile, after retrying for 5 s).
    pub fn set_mode(&self, mode: Mode) {
        let mut st = self.shared.lock();
        if mode == Mode::Refuse {
            st.listener = None;
            for (_, socks) in st.conns.drain() {
                cut(&socks);
            }
        } else if st.listener.is_none() {
            st.listener = Some(rebind(self.shared.addr));
        }
        if let Mode::Flaky { .. } | Mode::Hang { .. } = mode {
            st.flaky_seen = 0;
        }
        st.mode = mode;
    }

    /// Connections accepted so far, in every mode (including reset and hung ones).
    pub fn connections(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections reset by [`Mode::Flaky`] or [`Mode::Chaos`] so far.
    pub fn resets(&self) -> u64 {
        self.shared.resets.load(Ordering::SeqCst)
    }

    /// Connections held open and silent by [`Mode::Hang`] or [`Mode::Chaos`] so far.
    pub fn hangs(&self) -> u64 {
        self.shared.hangs.load(Ordering::SeqCst)
    }

    /// Requests answered `503 SlowDown` by [`Mode::Chaos`] so far.
    pub fn errors(&self) -> u64 {
        self.shared.errors.load(Ordering::SeqCst)
    }

    /// Connections open right now.
    pub fn active_connections(&self) -> usize {
        self.shared.lock().conns.len()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        {
            let mut st = self.shared.lock();
            st.listener = None;
            for (_, socks) in st.conns.drain() {
                cut(&socks);
            }
        }
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        let threads = std::mem::take(&mut *self.shared.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

fn rebind(addr: SocketAddr) -> TcpListener {
    // std sets SO_REUSEADDR on Unix listeners, so connections of the old socket lingering in
    // TIME_WAIT do not block the new bind.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpListener::bind(addr) {
            Ok(l) => {
                l.set_nonblocking(true).expect("nonblocking listener");
                return l;
            }
            Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("fault proxy: cannot bind {addr} again: {e}"),
        }
    }
}

/// Makes the final close of `s` send a RST instead of a FIN.
fn set_linger_zero(s: &TcpStream) {
    let l = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt on a socket we own, with a valid pointer and size for SO_LINGER.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// Cuts a connection: the client side will be reset on close; both sides shut down now.
fn cut(socks: &[TcpStream]) {
    if let Some(client) = socks.first() {
        set_linger_zero(client);
    }
    for s in socks {
        let _ = s.shutdown(Shutdown::Both);
    }
}

enum Action {
    Forward,
    Reset,
    Hang,
}

fn accept_loop(sh: Arc<Shared>) {
    while !sh.stopped() {
        let accepted = {
            let mut st = sh.lock();
            match st.listener.as_ref().map(|l| l.accept()) {
                Some(Ok((s, _))) => {
                    sh.accepted.fetch_add(1, Ordering::SeqCst);
                    let action = match st.mode {
                        Mode::Flaky { every } => st.every_nth(every, Action::Reset),
                        Mode::Hang { every } => st.every_nth(every, Action::Hang),
                        _ => Action::Forward,
                    };
                    let id = st.next_id;
                    st.next_id += 1;
                    match s.try_clone() {
                        Ok(c) => {
                            st.conns.insert(id, vec![c]);
                            Some((id, s, action))
                        }
                        Err(_) => None,
                    }
                }
                _ => None,
            }
        };
        match accepted {
            Some((id, s, action)) => {
                let sh2 = sh.clone();
                let t = thread::Builder::new()
                    .name(format!("faultproxy-conn-{id}"))
                    .spawn(move || handle(sh2, id, s, action));
                if let Ok(t) = t {
                    let mut threads = sh.threads.lock().unwrap_or_else(|e| e.into_inner());
                    threads.retain(|t| !t.is_finished());
                    threads.push(t);
                }
            }
            None => thread::sleep(Duration::from_millis(2)),
        }
    }
}

fn handle(sh: Arc<Shared>, id: u64, client: TcpStream, action: Action) {
    let _ = client.set_nonblocking(false);
    let _ = client.set_nodelay(true);
    match action {
        Action::Reset => {
            // Wait for the request's first bytes (so the client has sent it), then reset.
            let _ = client.set_read_timeout(Some(POLL));
            let deadline = Instant::now() + Duration::from_secs(1);
            let mut buf = [0u8; CHUNK];
            while !sh.stopped() && Instant::now() < deadline {
                match (&client).read(&mut buf) {
                    Ok(_) => break,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => break,
                }
            }
            set_linger_zero(&client);
            sh.resets.fetch_add(1, Ordering::SeqCst);
        }
        Action::Hang => {
            let _ = client.set_read_timeout(Some(POLL));
            sh.hangs.fetch_add(1, Ordering::SeqCst);
            drain_until_closed(&sh, &client);
        }
        Action::Forward => match TcpStream::connect_timeout(&sh.upstream, Duration::from_secs(2)) {
            Err(_) => set_linger_zero(&client),
            Ok(up) => {
                let _ = up.set_nodelay(true);
                let registered = {
                    let mut st = sh.lock();
                    match (st.conns.get_mut(&id), up.try_clone()) {
                        (Some(socks), Ok(c)) => {
                            socks.push(c);
                            true
                        }
                        _ => false,
                    }
                };
                if registered {
                    forward(&sh, &client, &up);
                } else {
                    // Cut (Refuse or drop) before the upstream connection was made.
                    set_linger_zero(&client);
                }
            }
        },
    }
    sh.lock().conns.remove(&id);
}

fn forward(sh: &Arc<Shared>, client: &TcpStream, up: &TcpStream) {
    let (Ok(c2), Ok(u2)) = (client.try_clone(), up.try_clone()) else { return };
    let sh2 = sh.clone();
    let t = thread::Builder::new().name("faultproxy-pump".into()).spawn(move || pump(&sh2, &c2, &u2, true));
    pump(sh, up, client, false);
    if let Ok(t) = t {
        let _ = t.join();
    }
}

/// Copies `from` to `to` until EOF (then half-closes `to`), an error (then shuts both down)
/// or stop, applying the mode to each chunk (`from_client`: the client's side).
fn pump(sh: &Shared, from: &TcpStream, to: &TcpStream, from_client: bool) {
    let _ = from.set_read_timeout(Some(POLL));
    let _ = to.set_write_timeout(Some(POLL));
    let mut buf = vec![0u8; CHUNK];
    let fail = || {
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    };
    loop {
        if !sh.wait_flowing() {
            return;
        }
        let n = match (&*from).read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {
                continue;
            }
            Err(_) => return fail(),
        };
        if let Mode::Slow { delay_per_chunk } = sh.mode()
            && !sh.sleep(delay_per_chunk)
        {
            return;
        }
        if !sh.wait_flowing() {
            return;
        }
        if from_client && let Mode::Chaos { every } = sh.mode() {
            let k = sh.chunks.fetch_add(1, Ordering::SeqCst) + 1;
            if k.is_multiple_of(u64::from(every.max(1))) {
                return chaos(sh, from, to, k / u64::from(every.max(1)));
            }
        }
        let mut data = &buf[..n];
        while !data.is_empty() {
            if sh.stopped() {
                return;
            }
            match (&*to).write(data) {
                Ok(0) => return fail(),
                Ok(k) => data = &data[k..],
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(_) => return fail(),
            }
        }
    }
}

/// The `n`-th fault of [`Mode::Chaos`] on the connection whose client is `client`: a reset, a
/// silent connection or S3's `SlowDown` answer, in turn.
fn chaos(sh: &Shared, client: &TcpStream, up: &TcpStream, n: u64) {
    match n % 3 {
        0 => {
            sh.resets.fetch_add(1, Ordering::SeqCst);
            set_linger_zero(client);
            let _ = client.shutdown(Shutdown::Both);
            let _ = up.shutdown(Shutdown::Both);
        }
        1 => {
            sh.hangs.fetch_add(1, Ordering::SeqCst);
            drain_until_closed(sh, client);
            let _ = client.shutdown(Shutdown::Both);
            let _ = up.shutdown(Shutdown::Both);
        }
        _ => {
            sh.errors.fetch_add(1, Ordering::SeqCst);
            let _ = client.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = (&*client).write_all(slow_down().as_bytes());
            let _ = client.shutdown(Shutdown::Both);
            let _ = up.shutdown(Shutdown::Both);
        }
    }
}

/// Reads and drops what `client` sends, answering nothing, until it closes (or the proxy stops):
/// a request that times out. `client` has a read timeout, so a stop is seen.
fn drain_until_closed(sh: &Shared, client: &TcpStream) {
    let mut buf = [0u8; CHUNK];
    while !sh.stopped() {
        match (&*client).read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
}
