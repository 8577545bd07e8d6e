//! Starting and stopping receivers: `ringest receive` or the real `thanos receive`, started with
//! the same flags (that is the drop-in promise), on loopback ports.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::client::http_get;

pub use ringest_loadgen::port::free_port;

/// Path of the `ringest` binary under test.
pub fn ringest_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("RINGEST_BIN") {
            return PathBuf::from(p);
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "-q", "-p", "ringest", "--bin", "ringest"])
            .current_dir(&root)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build -p ringest failed");
        let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target"));
        target.join("debug").join("ringest")
    })
    .clone()
}

/// Which implementation a [`Receiver`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impl {
    /// `ringest receive` (the binary under test).
    Ringest,
    /// `thanos receive`, the real Go binary at the pinned release ([`crate::thanos::thanos_bin`]).
    Thanos,
}

impl Impl {
    fn program(self) -> PathBuf {
        match self {
            Impl::Ringest => ringest_bin(),
            Impl::Thanos => crate::thanos::thanos_bin(),
        }
    }
}

/// A running `ringest receive` or `thanos receive`.
pub struct Receiver {
    /// The implementation it runs.
    pub imp: Impl,
    child: Option<Child>,
    /// Data directory (`--tsdb.path`).
    pub data: PathBuf,
    /// Remote-write address.
    pub rw_addr: String,
    /// Ops address.
    pub http_addr: String,
    /// gRPC address (the node's endpoint in a hashring).
    pub grpc_addr: String,
    /// Extra flags it was started with.
    pub extra: Vec<String>,
    /// File receiving the process' stderr (logs).
    pub log: PathBuf,
    /// Extra environment variables (kept across restarts until cleared).
    pub env: Vec<(String, String)>,
    /// A cgroup's `cgroup.procs` file the process joins before it starts (e.g. to run it under
    /// a memory limit), kept across restarts.
    pub cgroup_procs: Option<PathBuf>,
    /// Length of the log when the process was last spawned.
    log_start: usize,
    /// Cap'n Proto port of a Thanos receiver.
    capnp_port: u16,
}

impl Receiver {
    /// Starts a receiver on `data` with fresh ports and waits until it is ready.
    pub fn start(data: &Path, extra: &[&str]) -> Receiver {
        let mut r = Self::launch(data, extra);
        r.wait_ready(Duration::from_secs(60));
        r
    }

    /// Starts a receiver on `data` with fresh ports without waiting for it.
    pub fn launch(data: &Path, extra: &[&str]) -> Receiver {
        Self::launch_with_env(data, extra, &[])
    }

    /// A receiver with fresh ports that is not started yet: set `extra` (its addresses are
    /// known, e.g. for a hashring), then [`Receiver::relaunch`].
    pub fn unstarted(data: &Path) -> Receiver {
        Self::unstarted_as(Impl::Ringest, data)
    }

    /// [`Receiver::unstarted`] running `imp`.
    pub fn unstarted_as(imp: Impl, data: &Path) -> Receiver {
        Receiver {
            imp,
            env: Vec::new(),
            cgroup_procs: None,
            child: None,
            data: data.to_path_buf(),
            rw_addr: format!("127.0.0.1:{}", free_port()),
            http_addr: format!("127.0.0.1:{}", free_port()),
            grpc_addr: format!("127.0.0.1:{}", free_port()),
            extra: Vec::new(),
            log: data.with_extension("log"),
            log_start: 0,
            capnp_port: if imp == Impl::Thanos { free_port() } else { 0 },
        }
    }

    /// [`Receiver::launch`] with extra environment variables.
    pub fn launch_with_env(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Receiver {
        let mut r = Receiver::unstarted(data);
        // Its remote-write and ops ports are chosen by the kernel and read back from its log
        // ([`Receiver::relaunch`] does the same). Its gRPC port names the node (in a hashring,
        // to Thanos Query) and stays the same across restarts, so it is picked beforehand.
        r.rw_addr = EPHEMERAL.into();
        r.http_addr = EPHEMERAL.into();
        r.env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        r.extra = extra.iter().map(|s| s.to_string()).collect();
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        std::fs::create_dir_all(&self.data).expect("data dir");
        self.log_start = self.logs().len();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("log file");
        let mut cmd = Command::new(self.imp.program());
        if let Some(procs) = &self.cgroup_procs {
            let path = std::ffi::CString::new(procs.as_os_str().as_encoded_bytes()).expect("path");
            // SAFETY: between fork and exec only async-signal-safe calls (open, write, close)
            // on memory prepared before the fork.
            unsafe {
                use std::os::unix::process::CommandExt;
                cmd.pre_exec(move || {
                    // Writing 0 moves the writing process itself.
                    let fd = libc::open(path.as_ptr(), libc::O_WRONLY);
                    if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::close(fd);
                    Ok(())
                });
            }
        }
        let child = cmd
            .arg("receive")
            .arg(format!("--tsdb.path={}", self.data.display()))
            .arg(format!("--remote-write.address={}", self.rw_addr))
            .arg(format!("--http-address={}", self.http_addr))
            .arg(format!("--grpc-address={}", self.grpc_addr))
            .args(self.default_label())
            .args(self.imp_flags())
            .args(&self.extra)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("start {:?}: {e}", self.imp));
        self.child = Some(child);
        self.read_bound_addresses();
    }

    /// Replaces the addresses given as port 0 by those ringest logs it is listening on, once
    /// it has logged them (or has exited: they stay unresolved and [`Receiver::wait_ready`]
    /// reports the exit).
    fn read_bound_addresses(&mut self) {
        let start = Instant::now();
        loop {
            let logs = self.logs();
            let logs = logs.get(self.log_start..).unwrap_or("");
            for (msg, addr) in [
                ("Start listening for connections", &mut self.rw_addr),
                ("listening for requests and metrics", &mut self.http_addr),
                ("listening for StoreAPI and WritableStoreAPI gRPC", &mut self.grpc_addr),
            ] {
                if addr == EPHEMERAL
                    && let Some(bound) = logs.lines().filter(|l| l.contains(msg)).find_map(logged_address)
                {
                    *addr = bound;
                }
            }
            if [&self.rw_addr, &self.http_addr, &self.grpc_addr].iter().all(|a| *a != EPHEMERAL) {
                return;
            }
            let exited = self.child.as_mut().is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "no listening addresses logged:\n{logs}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// `--label=receive_replica="e2e"` unless the test gives labels of its own.
    fn default_label(&self) -> Option<&'static str> {
        (!self.extra.iter().any(|a| a.starts_with("--label"))).then_some("--label=receive_replica=\"e2e\"")
    }

    /// Flags one implementation needs here. Every Thanos listens for Cap'n Proto replication on
    /// 0.0.0.0:19391 unless told otherwise (in a pod each has its own address; ringest does not
    /// serve Cap'n Proto and refuses the flag). And Thanos v0.42.5 crashes (nil pointer in
    /// `MultiTSDB.Prune`) when its idle-tenant pruning job, which runs in the first minute of
    /// every fourth wall-clock hour when `--tsdb.retention` is set, meets a tenant TSDB still
    /// opening: the tests turn its retention off unless they set one.
    fn imp_flags(&self) -> Vec<String> {
        match self.imp {
            Impl::Ringest => Vec::new(),
            Impl::Thanos => {
                let mut f = vec![format!("--receive.capnproto-address=127.0.0.1:{}", self.capnp_port)];
                if !self.extra.iter().any(|a| a.starts_with("--tsdb.retention")) {
                    f.push("--tsdb.retention=0d".into());
                }
                f
            }
        }
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Polls `/-/ready` until it answers 200 (panics with the log after `timeout`).
    pub fn wait_ready(&mut self, timeout: Duration) {
        let start = Instant::now();
        let mut port_retries = 3;
        while start.elapsed() < timeout {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                // A port found free can be taken by another process before ringest binds it:
                // the remote-write and HTTP ports are then picked again (the gRPC port may be
                // named in a hashring, so a clash there still fails).
                let logs = self.logs();
                let clash = logs.get(self.log_start..).unwrap_or("");
                let retry = clash.to_lowercase().contains("address already in use")
                    && !clash.contains(&format!("--grpc-address={}", self.grpc_addr));
                if retry && port_retries > 0 {
                    port_retries -= 1;
                    self.child = None;
                    self.relaunch();
                    continue;
                }
                panic!("{:?} exited with {st} before ready:\n{logs}", self.imp);
            }
            if http_get(&self.http_addr, "/-/ready").map(|r| r.status == 200).unwrap_or(false) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{:?} not ready after {timeout:?}:\n{}", self.imp, self.logs());
    }

    /// The process' log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether its process was started and not stopped since.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        c.wait().expect("wait")
    }

    /// Starts again on the same data directory with new ports and waits until ready.
    pub fn restart(&mut self) {
        self.relaunch();
        self.wait_ready(Duration::from_secs(120));
    }

    /// Starts an [`Receiver::unstarted`] receiver on the ports it was given, and waits until
    /// it is ready.
    pub fn first_start(&mut self) {
        assert!(self.child.is_none(), "started already");
        self.spawn();
        self.wait_ready(Duration::from_secs(120));
    }

    /// Starts again on the same data directory with new ports, without waiting.
    pub fn relaunch(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        if self.imp == Impl::Ringest {
            self.rw_addr = EPHEMERAL.into();
            self.http_addr = EPHEMERAL.into();
        } else {
            self.rw_addr = format!("127.0.0.1:{}", free_port());
            self.http_addr = format!("127.0.0.1:{}", free_port());
        }
        self.spawn();
    }

    /// Sends a signal to the process.
    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.pid() as i32, sig) };
    }

    /// Waits up to `timeout` for the process to exit and returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            let c = self.child.as_mut()?;
            if let Ok(Some(st)) = c.try_wait() {
                self.child = None;
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// `/metrics` text.
    pub fn metrics(&self) -> String {
        http_get(&self.http_addr, "/metrics").expect("metrics").text()
    }

    /// Value of the metric line starting with `prefix` (name plus labels), if present.
    pub fn metric(&self, prefix: &str) -> Option<f64> {
        self.metrics()
            .lines()
            .find(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    /// Directory of a tenant.
    pub fn tenant_dir(&self, tenant: &str) -> PathBuf {
        self.data.join(tenant)
    }

    /// Bytes in a tenant's head chunk files (`chunks_head/`).
    pub fn head_chunk_bytes(&self, tenant: &str) -> u64 {
        std::fs::read_dir(self.tenant_dir(tenant).join("chunks_head"))
            .map(|rd| rd.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
            .unwrap_or(0)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// An address whose port the kernel chooses (ringest logs the one it got).
const EPHEMERAL: &str = "127.0.0.1:0";

/// The `address` field of a log line, in logfmt or JSON.
fn logged_address(line: &str) -> Option<String> {
    let (rest, end) = match line.split_once("address=") {
        Some((_, rest)) => (rest, ' '),
        None => (line.split_once("\"address\":\"")?.1, '"'),
    };
    let addr = rest.split(end).next()?.trim_matches('"');
    (!addr.is_empty()).then(|| addr.to_string())
}
