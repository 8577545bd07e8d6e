//! Loopback ports for the servers a bench or a test starts.

use std::net::TcpListener;

/// A free loopback port for a server to listen on. Taken below the kernel's ephemeral range
/// (32768 and up), so no outgoing connection (a peer's gRPC client, the load generator's HTTP
/// clients) can take it between this check and the server's bind; spread over the range by
/// process id and a counter so that concurrent processes do not pick the same one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    const SPAN: u32 = 22_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id().wrapping_mul(7919);
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + seed.wrapping_add(n.wrapping_mul(104_729)) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}
