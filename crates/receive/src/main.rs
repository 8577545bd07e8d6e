//! The `ringest` binary: `ringest receive [thanos receive flags]`, `ringest tsdb dump <dir>`.

use std::process::ExitCode;

/// mimalloc instead of glibc malloc: millions of small, long-lived allocations (series, chunks)
/// made from several threads, where glibc's per-thread arenas cost page faults and lock time.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc options (positions in the option enum of the pinned libmimalloc-sys 0.1.49, which
/// builds mimalloc v3 by default; v2 has the same two positions): do not commit arenas eagerly,
/// and give freed memory back after a second rather than keep it. Measured with the bench: about
/// 40 % less RSS per series at 100k and 1M series, with the same CPU per sample. It must run
/// before the first allocation (the Rust runtime allocates before `main`, and that reserves the
/// first arena), so it is an ELF constructor.
extern "C" fn tune_allocator() {
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: mi_option_set only stores an integer option; both indexes exist in this version.
    unsafe {
        libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set(PURGE_DELAY, 1000);
    }
}

#[used]
#[unsafe(link_section = ".init_array")]
static TUNE_ALLOCATOR: extern "C" fn() = tune_allocator;

use ringest::config::{self, ReceiveConfig};

/// Raises the soft limit on open files to the hard one, as the Go runtime does for Thanos: a
/// receiver holds a connection per client and files per tenant, and the bounds that matter are
/// its own (`--ringest.http.max-connections`, `--ringest.max-tenants`), not a default of 1024.
fn raise_open_files_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    let raised = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max && {
            let old = lim.rlim_cur;
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 && old < lim.rlim_max
        }
    };
    if raised {
        tracing::debug!(limit = lim.rlim_max, "raised the open files limit to its hard limit");
    }
}

/// Tasks a runtime worker runs between two looks for new network events (tokio's default: 61).
/// A worker busy with other connections' tasks notices a request only at that look, so on a
/// node under load (the attack test: tasks of 30-50 µs) a request waited up to 2-3 ms to be
/// picked up; a look costs one `epoll_wait` that returns at once.
const EVENT_INTERVAL: u32 = 7;

fn main() -> ExitCode {
    // `--version` anywhere, as Thanos' kingpin takes it (even without a command), printed on
    // standard error as Thanos prints it.
    if std::env::args().skip(1).take_while(|a| a != "--").any(|a| a == "--version") {
        let argv0 = std::env::args().next().unwrap_or_default();
        let name = std::path::Path::new(&argv0).file_name().and_then(|n| n.to_str()).unwrap_or("ringest");
        eprint!("{}", ringest::version_text(name));
        return ExitCode::SUCCESS;
    }
    let matches = match config::command().try_get_matches() {
        Ok(m) => m,
        Err(e) => e.exit(),
    };
    match matches.subcommand() {
        Some(("receive", m)) => {
            let cfg = match ReceiveConfig::from_matches(m) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("level=error msg=\"preparing receive command failed\" err={e:?}");
                    return ExitCode::from(1);
                }
            };
            ringest::logging::init(&cfg.log);
            raise_open_files_limit();
            // SAFETY: mi_collect only walks and trims the allocator's own structures.
            ringest::pool::set_release(|| unsafe { libmimalloc_sys::mi_collect(true) });
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("ringest")
                .on_thread_start(ringest::sched::latency_thread)
                .event_interval(EVENT_INTERVAL)
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(err = %e, "failed to start the runtime");
                    return ExitCode::from(1);
                }
            };
            match rt.block_on(ringest::server::run(cfg)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(err = %format!("{e:#}"), "receive command failed");
                    ExitCode::from(1)
                }
            }
        }
        Some(("tsdb", m)) => match m.subcommand() {
            Some(("dump", d)) => {
                let dir = d.get_one::<String>("dir").cloned().unwrap_or_default();
                let bits = d.get_one::<String>("format").is_some_and(|f| f == "bits");
                let mint = d.get_one::<i64>("min-time").copied().unwrap_or(i64::MIN);
                let maxt = d.get_one::<i64>("max-time").copied().unwrap_or(i64::MAX);
                let stdout = std::io::stdout();
                let mut out = std::io::BufWriter::new(stdout.lock());
                match ringest::tools::dump(std::path::Path::new(&dir), mint, maxt, bits, &mut out) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        ExitCode::from(1)
                    }
                }
            }
            _ => ExitCode::from(2),
        },
        _ => ExitCode::from(2),
    }
}
