// SPDX-License-Identifier: GPL-3.0-or-later
//! `cephfsd-bench [run]`: round-trip latency and 1 MiB throughput through libcephfsd
//! against direct in-process libcephfs calls; prints a table.
//! `cephfsd-bench hold`: test helper that opens files, prints READY and waits to be killed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ceph_rs_wire::oflags::*;
use ceph_rs_wire::*;
use clap::{Args, Parser, Subcommand};
use libcephfsd::cephfs::{self, UserPerm};

#[derive(Parser)]
#[command(name = "cephfsd-bench", args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the benchmark (default).
    Run(RunArgs),
    /// Test helper: open files through the daemon, print READY, wait to be killed.
    Hold(HoldArgs),
}

#[derive(Args, Clone)]
struct Cluster {
    #[arg(long, default_value = "/var/tmp/ceph_rs/ceph/ceph.conf")]
    conf: String,
    #[arg(long, default_value = "samba")]
    client_id: String,
    #[arg(long, default_value = "cephfs")]
    fs: String,
}

#[derive(Args, Clone)]
struct RunArgs {
    /// Daemon socket; without it a private libcephfsd is started next to this binary.
    #[arg(long)]
    socket: Option<PathBuf>,
    #[command(flatten)]
    cluster: Cluster,
    /// Round trips per latency figure.
    #[arg(long, default_value_t = 5000)]
    iterations: usize,
    /// MiB moved per throughput figure (in 1 MiB requests).
    #[arg(long, default_value_t = 128)]
    mib: usize,
    /// Poll for each reply this long before sleeping (the module's ceph_rs:spin_usecs).
    #[arg(long, default_value_t = 0)]
    spin_usecs: u64,
}

#[derive(Args, Clone)]
struct HoldArgs {
    #[arg(long)]
    socket: PathBuf,
    #[command(flatten)]
    cluster: Cluster,
    /// Directory (relative to the fs root) to create files in.
    #[arg(long)]
    dir: String,
    #[arg(long, default_value_t = 10)]
    files: usize,
}

fn main() {
    let cli = Cli::parse();
    match cli.cmd {
        Some(Cmd::Hold(a)) => hold(a),
        Some(Cmd::Run(a)) => run(a),
        None => run(cli.run),
    }
}

fn mount_req(c: &Cluster, root: &str) -> MountReq {
    MountReq {
        config_file: c.conf.clone(),
        user_id: c.client_id.clone(),
        filesystem: Some(c.fs.clone()),
        root_path: root.into(),
    }
}

fn die(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("cephfsd-bench: {what}: {e}");
    std::process::exit(1)
}

fn hold(a: HoldArgs) {
    let mut c =
        Client::connect(&a.socket, "cephfsd-bench hold").unwrap_or_else(|e| die("connect", e));
    let (m, _) = c
        .call(0, &mount_req(&a.cluster, "/"), &[])
        .unwrap_or_else(|e| die("mount", e));
    let (d, _) = c
        .call(
            0,
            &WalkReq {
                dir: m.root,
                path: a.dir.clone(),
            },
            &[],
        )
        .unwrap_or_else(|e| die("walk", e));
    for i in 0..a.files {
        let req = OpenReq {
            dir: d.ino,
            name: format!("held-{}-{i}", std::process::id()),
            flags: O_CREAT | O_RDWR,
            mode: 0o644,
        };
        let (o, _) = c.call(0, &req, &[]).unwrap_or_else(|e| die("open", e));
        c.call(
            0,
            &WriteReq {
                fh: o.fh,
                offset: 0,
            },
            b"held",
        )
        .unwrap_or_else(|e| die("write", e));
    }
    // Requests in flight when we get killed.
    for _ in 0..100 {
        let _ = c.submit(0, &GetAttrReq { ino: d.ino }, &[]);
    }
    print!("READY");
    std::io::stdout().flush().unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

struct OwnDaemon {
    child: Child,
    sock: PathBuf,
}

impl Drop for OwnDaemon {
    fn drop(&mut self) {
        // Signal our own child by pid through kill(1).
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn start_daemon() -> OwnDaemon {
    let exe = std::env::current_exe().unwrap_or_else(|e| die("current_exe", e));
    let bin = exe.with_file_name("libcephfsd");
    let sock = PathBuf::from(format!(
        "/var/tmp/cephfsd-bench-{}.sock",
        std::process::id()
    ));
    let mut cmd = Command::new(&bin);
    cmd.args(["--socket", sock.to_str().unwrap(), "--log-level", "warn"])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    // The daemon must not outlive the benchmark, even if it aborts.
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| die(&format!("starting {}", bin.display()), e));
    let t0 = Instant::now();
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        if t0.elapsed() > Duration::from_secs(20) {
            die("daemon", "did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    OwnDaemon { child, sock }
}

struct Lat {
    samples: Vec<Duration>,
}

impl Lat {
    fn measure(n: usize, mut f: impl FnMut()) -> Lat {
        for _ in 0..(n / 10).max(10) {
            f(); // warm up
        }
        let mut samples = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            f();
            samples.push(t.elapsed());
        }
        samples.sort();
        Lat { samples }
    }

    fn pct(&self, q: f64) -> f64 {
        let i = ((self.samples.len() as f64 * q).ceil() as usize).clamp(1, self.samples.len()) - 1;
        self.samples[i].as_secs_f64() * 1e6
    }
}

fn mibs(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

fn run(a: RunArgs) {
    let own;
    let sock = match &a.socket {
        Some(s) => s.clone(),
        None => {
            own = start_daemon();
            own.sock.clone()
        }
    };
    let dir_name = format!("cephfsd-bench-{}", std::process::id());

    // Through the daemon.
    let mut c = Client::connect(&sock, "cephfsd-bench").unwrap_or_else(|e| die("connect", e));
    c.set_spin(Duration::from_micros(a.spin_usecs));
    let (m, _) = c
        .call(0, &mount_req(&a.cluster, "/"), &[])
        .unwrap_or_else(|e| die("mount", e));
    let (d, _) = c
        .call(
            0,
            &MkdirReq {
                dir: m.root,
                name: dir_name.clone(),
                mode: 0o755,
            },
            &[],
        )
        .unwrap_or_else(|e| die("mkdir", e));
    let (f, _) = c
        .call(
            0,
            &OpenReq {
                dir: d.ino,
                name: "data".into(),
                flags: O_CREAT | O_RDWR,
                mode: 0o644,
            },
            &[],
        )
        .unwrap_or_else(|e| die("open", e));
    let noop = Lat::measure(a.iterations, || {
        c.call(0, &NoopReq, &[]).unwrap();
    });
    let getattr = Lat::measure(a.iterations, || {
        c.call(0, &GetAttrReq { ino: f.ino }, &[]).unwrap();
    });
    let chunk = vec![0x5au8; 1 << 20];
    let t = Instant::now();
    for i in 0..a.mib {
        c.call(
            0,
            &WriteReq {
                fh: f.fh,
                offset: (i << 20) as u64,
            },
            &chunk,
        )
        .unwrap();
    }
    c.call(
        0,
        &FsyncReq {
            fh: f.fh,
            datasync: false,
        },
        &[],
    )
    .unwrap();
    let d_write = mibs(a.mib << 20, t.elapsed());
    let t = Instant::now();
    for i in 0..a.mib {
        let (_, data) = c
            .call(
                0,
                &ReadReq {
                    fh: f.fh,
                    offset: (i << 20) as u64,
                    len: 1 << 20,
                },
                &[],
            )
            .unwrap();
        assert_eq!(data.len(), 1 << 20);
    }
    let d_read = mibs(a.mib << 20, t.elapsed());
    // Pipelined reads: 8 outstanding 1 MiB reads over 4 Fhs (requests on one Fh are
    // ordered, so several Fhs let the daemon run them concurrently).
    let fhs: Vec<Fh> = (0..4)
        .map(|_| {
            let req = OpenInoReq {
                ino: f.ino,
                flags: O_RDONLY,
            };
            c.call(0, &req, &[]).unwrap().0.fh
        })
        .collect();
    let t = Instant::now();
    let mut next = 0;
    let mut inflight = std::collections::VecDeque::new();
    while next < a.mib || !inflight.is_empty() {
        while next < a.mib && inflight.len() < 8 {
            inflight.push_back(
                c.submit(
                    0,
                    &ReadReq {
                        fh: fhs[next % fhs.len()],
                        offset: (next << 20) as u64,
                        len: 1 << 20,
                    },
                    &[],
                )
                .unwrap(),
            );
            next += 1;
        }
        let id = inflight.pop_front().unwrap();
        let r = c.wait(id).unwrap();
        assert_eq!(r.data.len(), 1 << 20);
    }
    let d_read_p = mibs(a.mib << 20, t.elapsed());
    for fh in fhs {
        c.call(0, &CloseReq { fh }, &[]).unwrap();
    }
    c.call(0, &CloseReq { fh: f.fh }, &[]).unwrap();

    // Direct, in this process.
    // Same libcephfs options as the daemon's mounts, so the caches compare.
    let opts = libcephfsd::server::ceph_options();
    let mount = cephfs::Mount::connect(
        Path::new(&a.cluster.conf),
        &a.cluster.client_id,
        Some(&a.cluster.fs),
        &opts,
    )
    .unwrap_or_else(|e| die("direct mount", e.1));
    let perm = UserPerm::new(0, 0, &[]).unwrap();
    let root = mount.root().unwrap();
    let (dir, _) = root.lookup(&dir_name, &perm).unwrap();
    let (ino, _) = dir.lookup("data", &perm).unwrap();
    let ino = Arc::new(ino);
    let direct_getattr = Lat::measure(a.iterations, || {
        ino.getattr(&perm).unwrap();
    });
    let (_, file, _) = dir
        .create(
            "direct",
            0o644,
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
            &perm,
        )
        .unwrap();
    let t = Instant::now();
    for i in 0..a.mib {
        file.write((i << 20) as u64, &chunk).unwrap();
    }
    file.fsync(false).unwrap();
    let x_write = mibs(a.mib << 20, t.elapsed());
    let t = Instant::now();
    for i in 0..a.mib {
        assert_eq!(file.read((i << 20) as u64, 1 << 20).unwrap().len(), 1 << 20);
    }
    let x_read = mibs(a.mib << 20, t.elapsed());
    drop(file);

    // Clean up.
    for n in ["data", "direct"] {
        let _ = dir.unlink(n, &perm);
    }
    let _ = root.rmdir(&dir_name, &perm);
    drop((ino, dir, root));

    println!(
        "cephfsd-bench: {} round trips per latency row, {} MiB per throughput row",
        a.iterations, a.mib
    );
    println!("{:<44} {:>10} {:>10}", "latency", "p50 µs", "p99 µs");
    println!(
        "{:<44} {:>10.1} {:>10.1}",
        "Noop via libcephfsd",
        noop.pct(0.5),
        noop.pct(0.99)
    );
    println!(
        "{:<44} {:>10.1} {:>10.1}",
        "GetAttr via libcephfsd",
        getattr.pct(0.5),
        getattr.pct(0.99)
    );
    println!(
        "{:<44} {:>10.1} {:>10.1}",
        "ceph_ll_getattr direct (in process)",
        direct_getattr.pct(0.5),
        direct_getattr.pct(0.99)
    );
    println!(
        "{:<44} {:>10} {:>10}",
        "throughput (1 MiB requests)", "write MiB/s", "read MiB/s"
    );
    println!(
        "{:<44} {:>10.0} {:>10.0}",
        "via libcephfsd (one outstanding)", d_write, d_read
    );
    println!(
        "{:<44} {:>10} {:>10.0}",
        "via libcephfsd (8 reads pipelined)", "-", d_read_p
    );
    println!(
        "{:<44} {:>10.0} {:>10.0}",
        "direct libcephfs (in process)", x_write, x_read
    );
}
