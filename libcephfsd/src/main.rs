// SPDX-License-Identifier: GPL-3.0-or-later
//! `libcephfsd [serve] ...` runs the daemon; `libcephfsd status` prints its statistics.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ceph_rs_wire::{Client, StatusRep, StatusReq};
use clap::{Args, Parser, Subcommand};

const DEFAULT_SOCKET: &str = "/run/libcephfsd.sock";

#[derive(Parser, Debug)]
#[command(
    name = "libcephfsd",
    version,
    about = "Per-node daemon serving CephFS (libcephfs) to the ceph_rs Samba VFS module",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the daemon (the default).
    Serve(ServeArgs),
    /// Connect to a running daemon and print sessions, mounts, handles and op latencies.
    Status {
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
    },
}

#[derive(Args, Debug, Clone)]
struct ServeArgs {
    /// Unix socket to listen on (created with mode 0660).
    #[arg(long, default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Peer uid allowed to connect (SO_PEERCRED); repeatable. Default: 0 only.
    #[arg(long = "allowed-uid", value_name = "UID")]
    allowed_uids: Vec<u32>,
    /// Worker threads for libcephfs calls (the bounded blocking pool).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: u16,
    /// Log level (error, warn, info, debug, trace) or a tracing filter directive.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Keep an unused mount this long before unmounting it.
    #[arg(long, default_value_t = 60)]
    mount_grace_secs: u64,
    /// A libcephfs option for every mount, set after the config file and the daemon's own
    /// settings (so it overrides both); repeatable. E.g. client_oc_size=536870912.
    #[arg(long = "ceph-option", value_name = "NAME=VALUE", value_parser = name_value)]
    ceph_options: Vec<(String, String)>,
    /// Memory for read-ahead, all sessions together, in MiB (0: none). A read of 256 KiB
    /// to 1 MiB that continues a handle's sequence has the next as many bytes read while
    /// it is sent; each such handle holds up to two of its reads.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(0..=4096))]
    read_ahead_mib: u32,
    /// Memory smbds may share with the daemon for their large reads, all sessions
    /// together, in MiB (0: none): libcephfs copies such a read's bytes into an area
    /// the smbd maps (and lends to its read buffer), instead of the daemon writing them
    /// into smbd's memory. An smbd reading blocks of 1 MiB or more (signed or encrypted,
    /// or async) shares one area of up to 16 MiB and 64 KiB (parts as large as its
    /// largest read and a page: two for 8 MiB reads, sixteen for 1 MiB ones; only the
    /// pages of the parts used at once are touched) until it stops reading for a minute;
    /// past this bound, its reads go as before, and the daemon asks smbds whose areas
    /// had no read for 5 s to give them up.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(0..=4096))]
    shared_read_mib: u32,
    /// Freed memory (libcephfs's caches and the daemon's buffers, once freed) kept
    /// resident for reuse, in MiB; past it, every free page goes back to the kernel
    /// once half a second passes without a read or write (while they go on: past four
    /// times as much).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(0..=1048576))]
    heap_keep_mib: u32,
}

fn name_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("{s:?}: expected NAME=VALUE")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Some(Cmd::Status { socket }) => status(&socket),
        Some(Cmd::Serve(args)) => serve(args),
        None => serve(cli.serve),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    // Before any thread starts (see libcephfsd::heap).
    let arenas = libcephfsd::heap::limit_arenas();
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match arenas {
        Some(n) => tracing::info!("malloc arenas: at most {n}"),
        None => tracing::info!("malloc arenas: as glibc's settings say"),
    }
    let allowed_uids = if args.allowed_uids.is_empty() {
        vec![0]
    } else {
        args.allowed_uids
    };
    let config = libcephfsd::server::Config {
        socket: args.socket,
        allowed_uids,
        threads: args.threads as usize,
        mount_grace: Duration::from_secs(args.mount_grace_secs),
        ceph_options: args.ceph_options,
        read_ahead: args.read_ahead_mib as usize * 1024 * 1024,
        shared_read: args.shared_read_mib as usize * 1024 * 1024,
        heap_keep: args.heap_keep_mib as u64 * 1024 * 1024,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(libcephfsd::server::RUNTIME_WORKERS)
        .max_blocking_threads(config.threads)
        .thread_name("libcephfsd")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("libcephfsd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(libcephfsd::server::serve(config)) {
        Ok(()) => {
            // Do not wait for stuck blocking calls (e.g. a hung unmount).
            rt.shutdown_timeout(Duration::from_secs(1));
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("libcephfsd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn status(socket: &PathBuf) -> ExitCode {
    let mut c = match Client::connect(socket, "libcephfsd status") {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "libcephfsd status: cannot connect to {}: {e}",
                socket.display()
            );
            return ExitCode::FAILURE;
        }
    };
    match c.call(0, &StatusReq, &[]) {
        Ok((rep, _)) => {
            use std::io::Write;
            // A closed pipe (`libcephfsd status | head`) is not an error.
            let _ = std::io::stdout().write_all(format_status(&rep).as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("libcephfsd status: {e} {}", c.last_error());
            ExitCode::FAILURE
        }
    }
}

fn format_status(s: &StatusRep) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "{} pid {} up {}s", s.daemon, s.pid, s.uptime_secs);
    let _ = writeln!(
        o,
        "live handles {}  ops {}  sessions {}  mounts {}",
        s.total_handles,
        s.total_ops,
        s.sessions.len(),
        s.mounts.len()
    );
    let ra = &s.read_ahead;
    let _ = writeln!(
        o,
        "read-ahead: held {} KiB of {} KiB  reads {}  hits {}  stale {}",
        ra.held_bytes / 1024,
        ra.max_bytes / 1024,
        ra.reads,
        ra.hits,
        ra.stale
    );
    let sh = &s.shared;
    let _ = writeln!(
        o,
        "shared for reads: {} KiB of {} KiB in {} areas",
        sh.shared_bytes / 1024,
        sh.max_bytes / 1024,
        sh.areas
    );
    let h = &s.heap;
    let _ = writeln!(
        o,
        "heap: in use {} MiB  freed {} MiB (kept up to {} MiB)  given back {} times, {} MiB",
        h.in_use_bytes >> 20,
        h.freed_bytes >> 20,
        h.keep_bytes >> 20,
        h.trims,
        h.given_back_bytes >> 20
    );
    let _ = writeln!(
        o,
        "\nSESSIONS\n{:>6} {:>8} {:>6} {:>8} {:>10} {:>6}  CLIENT",
        "ID", "PID", "UID", "HANDLES", "OPS", "INFL"
    );
    for x in &s.sessions {
        let _ = writeln!(
            o,
            "{:>6} {:>8} {:>6} {:>8} {:>10} {:>6}  {}",
            x.id, x.peer_pid, x.peer_uid, x.handles, x.ops, x.in_flight, x.client
        );
    }
    let _ = writeln!(o, "\nMOUNTS\n{:>4} {:>6}  KEY", "REFS", "IDLE");
    for m in &s.mounts {
        let idle = m
            .idle_secs
            .map(|i| format!("{i}s"))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(o, "{:>4} {:>6}  {}", m.refcount, idle, m.key);
    }
    let _ = writeln!(
        o,
        "\nOPS (latency in µs)\n{:<14} {:>10} {:>7} {:>9} {:>9} {:>9} {:>9}",
        "OP", "COUNT", "ERRORS", "MEAN", "P50", "P99", "MAX"
    );
    for op in &s.ops {
        let _ = writeln!(
            o,
            "{:<14} {:>10} {:>7} {:>9} {:>9} {:>9} {:>9}",
            op.op, op.count, op.errors, op.mean_us, op.p50_us, op.p99_us, op.max_us
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceph_options_are_name_value_pairs() {
        let ok = |s: &str| name_value(s).unwrap();
        assert_eq!(
            ok("client_oc_size=1"),
            ("client_oc_size".into(), "1".into())
        );
        // Only the first '=' splits; the value may be empty.
        assert_eq!(ok(" a =b=c"), ("a".into(), "b=c".into()));
        assert_eq!(ok("a="), ("a".into(), "".into()));
        for bad in ["", "a", "=1", " =1"] {
            assert!(name_value(bad).is_err(), "{bad:?}");
        }
        let cli =
            Cli::try_parse_from(["libcephfsd", "--ceph-option", "x=1", "--ceph-option", "y=2"])
                .unwrap();
        let want = vec![("x".into(), "1".into()), ("y".into(), "2".into())];
        assert_eq!(cli.serve.ceph_options, want);
        assert!(Cli::try_parse_from(["libcephfsd", "--ceph-option", "novalue"]).is_err());
    }
}
