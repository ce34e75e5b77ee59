// SPDX-License-Identifier: GPL-3.0-or-later
//! Unit tests: framing, limits, garbage, and a round trip of every op's messages.

use std::io::Write;
use std::os::unix::net::UnixStream;

use crate::*;

fn stat(i: u64) -> Stat {
    Stat {
        ino: i,
        snapid: CEPH_NOSNAP,
        dev: 7,
        mode: 0o100644,
        nlink: 1,
        uid: 1001,
        gid: 1002,
        rdev: 0,
        size: 12345,
        blksize: 4096,
        blocks: 8,
        atime: Timespec { sec: 1, nsec: 2 },
        mtime: Timespec {
            sec: -3,
            nsec: 999_999_999,
        },
        ctime: Timespec { sec: 5, nsec: 6 },
        btime: Timespec { sec: 7, nsec: 8 },
    }
}

fn entry(i: u64) -> Entry {
    Entry {
        ino: Ino::new(i as u32, 9),
        stat: stat(i),
    }
}

/// One sample request per op.
fn sample_requests() -> Vec<AnyRequest> {
    let ino = Ino::new(3, 77);
    let fh = Fh::new(4, 78);
    let dh = Dh::new(5, 79);
    let mount = MountId::new(1, 80);
    let lock = Flock {
        typ: F_WRLCK,
        whence: 0,
        start: 10,
        len: 20,
        pid: 0,
    };
    vec![
        AnyRequest::Hello(Hello {
            min_version: 1,
            max_version: 3,
            features: 0xff,
            client: "smbd[1]".into(),
        }),
        AnyRequest::Noop(NoopReq),
        AnyRequest::Status(StatusReq),
        AnyRequest::RegisterCreds(RegisterCredsReq {
            creds: Creds {
                uid: 1,
                gid: 2,
                groups: vec![3, 4, 5],
            },
        }),
        AnyRequest::UnregisterCreds(UnregisterCredsReq { cred: 3 }),
        AnyRequest::Mount(MountReq {
            config_file: "/etc/ceph/ceph.conf".into(),
            user_id: "samba".into(),
            filesystem: Some("cephfs".into()),
            root_path: "/shares/a".into(),
        }),
        AnyRequest::Unmount(UnmountReq { mount }),
        AnyRequest::Lookup(LookupReq {
            dir: ino,
            name: "ä file".into(),
        }),
        AnyRequest::LookupPlus(LookupPlusReq {
            dir: ino,
            name: "f".into(),
            want: XattrWant {
                names: vec!["user.DOSATTRIB".into()],
                list: true,
            },
        }),
        AnyRequest::GetAttrPlus(GetAttrPlusReq {
            ino,
            want: XattrWant::default(),
        }),
        AnyRequest::WalkPlus(WalkPlusReq {
            dir: ino,
            path: "a/b/c".into(),
            no_symlinks: true,
            want: XattrWant {
                names: vec!["user.DOSATTRIB".into()],
                list: true,
            },
        }),
        AnyRequest::FindName(FindNameReq {
            dir: ino,
            name: "ReadMe.TXT".into(),
        }),
        AnyRequest::LookupScan(LookupScanReq {
            lookup: LookupPlusReq {
                dir: ino,
                name: "ReadMe.TXT".into(),
                want: XattrWant::default(),
            },
        }),
        AnyRequest::ReadDirPlus(ReadDirPlusReq {
            dh: Dh::new(4, 4),
            max_entries: 10,
            max_bytes: 4096,
            want: XattrWant {
                names: vec!["user.DOSATTRIB".into(), "security.NTACL".into()],
                list: false,
            },
        }),
        AnyRequest::Walk(WalkReq {
            dir: ino,
            path: "a/b/../c".into(),
        }),
        AnyRequest::LookupInode(LookupInodeReq { mount, ino: 0x1000 }),
        AnyRequest::GetAttr(GetAttrReq { ino }),
        AnyRequest::FGetAttr(FGetAttrReq { fh }),
        AnyRequest::Forget(ForgetReq {
            inos: vec![ino, Ino::new(1, 1)],
        }),
        AnyRequest::SetAttr(SetAttrReq {
            ino,
            attr: SetAttr {
                mode: Some(0o600),
                uid: None,
                gid: Some(5),
                size: Some(1 << 40),
                atime: Some(TimeSet::Now),
                mtime: Some(TimeSet::At(Timespec { sec: 9, nsec: 1 })),
                btime: None,
                ctime: None,
            },
        }),
        AnyRequest::Open(OpenReq {
            dir: ino,
            name: "f".into(),
            flags: oflags::O_CREAT | oflags::O_EXCL | oflags::O_RDWR,
            mode: 0o644,
        }),
        AnyRequest::OpenIno(OpenInoReq {
            ino,
            flags: oflags::O_RDONLY,
        }),
        AnyRequest::OpenPlus(OpenPlusReq {
            open: OpenReq {
                dir: ino,
                name: "g".into(),
                flags: oflags::O_CREAT | oflags::O_WRONLY,
                mode: 0o600,
            },
            want: XattrWant {
                names: vec!["security.NTACL".into()],
                list: true,
            },
        }),
        AnyRequest::OpenRead(OpenReadReq {
            open: OpenReq {
                dir: ino,
                name: "h".into(),
                flags: oflags::O_RDONLY,
                mode: 0,
            },
            max: 65536,
        }),
        AnyRequest::OpenInoRead(OpenInoReadReq {
            ino,
            flags: oflags::O_RDONLY,
            max: 65536,
        }),
        AnyRequest::Close(CloseReq { fh }),
        AnyRequest::Read(ReadReq {
            fh,
            offset: u64::MAX,
            len: 1 << 20,
        }),
        AnyRequest::ReadTo(ReadToReq {
            fh: Fh::new(3, 8),
            offset: 1 << 40,
            len: 1 << 20,
            addr: 0x7f00_1234_5000,
            ahead_msecs: 0,
        }),
        AnyRequest::ShareMem(ShareMemReq {
            fd: 12,
            len: 16 << 20,
        }),
        AnyRequest::ReadShm(ReadShmReq {
            fh,
            offset: 1 << 40,
            len: 8 << 20,
            at: 8 << 20,
            ahead_msecs: 1000,
        }),
        AnyRequest::Write(WriteReq { fh, offset: 77 }),
        AnyRequest::WriteFrom(WriteFromReq {
            fh,
            offset: 1 << 33,
            len: 1 << 20,
            addr: 0x7f00_4321_0000,
        }),
        AnyRequest::SendTo(SendToReq {
            fh,
            offset: 1 << 34,
            len: 8 << 20,
            sock: 37,
            ahead_msecs: 0,
        }),
        AnyRequest::RecvFrom(RecvFromReq {
            fh,
            offset: 1 << 35,
            len: 8 << 20,
            sock: 38,
        }),
        AnyRequest::CopyRange(CopyRangeReq {
            src: Fh::new(3, 8),
            src_offset: 1 << 36,
            dst: fh,
            dst_offset: 1 << 20,
            len: 16 << 20,
        }),
        AnyRequest::Fsync(FsyncReq { fh, datasync: true }),
        AnyRequest::Fallocate(FallocateReq {
            fh,
            mode: 3,
            offset: 0,
            len: 4096,
        }),
        AnyRequest::Lseek(LseekReq {
            fh,
            offset: -1,
            whence: 2,
        }),
        AnyRequest::GetLk(GetLkReq {
            fh,
            lock,
            owner: 99,
        }),
        AnyRequest::SetLk(SetLkReq {
            fh,
            lock,
            owner: 100,
        }),
        AnyRequest::OpenDir(OpenDirReq { ino }),
        AnyRequest::ReadDir(ReadDirReq {
            dh,
            max_entries: 100,
            max_bytes: 65536,
        }),
        AnyRequest::RewindDir(RewindDirReq { dh }),
        AnyRequest::CloseDir(CloseDirReq { dh }),
        AnyRequest::Mkdir(MkdirReq {
            dir: ino,
            name: "d".into(),
            mode: 0o755,
        }),
        AnyRequest::Unlink(UnlinkReq {
            dir: ino,
            name: "f".into(),
        }),
        AnyRequest::Rmdir(RmdirReq {
            dir: ino,
            name: "d".into(),
        }),
        AnyRequest::Rename(RenameReq {
            src_dir: ino,
            src_name: "a".into(),
            dst_dir: Ino::new(8, 8),
            dst_name: "b".into(),
            noreplace: false,
        }),
        AnyRequest::Link(LinkReq {
            ino,
            dir: ino,
            name: "l".into(),
        }),
        AnyRequest::Symlink(SymlinkReq {
            dir: ino,
            name: "s".into(),
            target: "../x".into(),
        }),
        AnyRequest::Readlink(ReadlinkReq { ino }),
        AnyRequest::Mknod(MknodReq {
            dir: ino,
            name: "fifo".into(),
            mode: 0o10644,
            rdev: 0,
        }),
        AnyRequest::StatFs(StatFsReq { ino }),
        AnyRequest::Epochs(EpochsReq),
        AnyRequest::GetXattr(GetXattrReq {
            ino,
            name: "user.a".into(),
            size: 0,
        }),
        AnyRequest::SetXattr(SetXattrReq {
            ino,
            name: "user.a".into(),
            flags: 1,
            unless_same: true,
        }),
        AnyRequest::ListXattr(ListXattrReq { ino, size: 4096 }),
        AnyRequest::RemoveXattr(RemoveXattrReq {
            ino,
            name: "user.a".into(),
        }),
    ]
}

fn encode_any(id: u64, cred: u32, r: &AnyRequest, data: &[u8]) -> Vec<u8> {
    macro_rules! enc {
        ($($name:ident),*) => {
            match r {
                $(AnyRequest::$name(x) => encode_request(id, cred, x, data),)*
            }
        };
    }
    let f = enc!(
        Hello,
        Noop,
        Status,
        Epochs,
        ShareMem,
        ReadShm,
        CopyRange,
        OpenPlus,
        OpenRead,
        OpenInoRead,
        RegisterCreds,
        UnregisterCreds,
        Mount,
        Unmount,
        Lookup,
        LookupPlus,
        GetAttrPlus,
        FindName,
        LookupScan,
        WalkPlus,
        ReadDirPlus,
        Walk,
        LookupInode,
        GetAttr,
        FGetAttr,
        Forget,
        SetAttr,
        Open,
        OpenIno,
        Close,
        Read,
        ReadTo,
        Write,
        WriteFrom,
        SendTo,
        RecvFrom,
        Fsync,
        Fallocate,
        Lseek,
        GetLk,
        SetLk,
        OpenDir,
        ReadDir,
        RewindDir,
        CloseDir,
        Mkdir,
        Unlink,
        Rmdir,
        Rename,
        Link,
        Symlink,
        Readlink,
        Mknod,
        StatFs,
        GetXattr,
        SetXattr,
        ListXattr,
        RemoveXattr
    )
    .unwrap();
    let mut out = Vec::new();
    f.write_to(&mut out).unwrap();
    assert_eq!(out.len(), f.len());
    out
}

#[test]
fn every_op_has_a_sample_and_round_trips() {
    let samples = sample_requests();
    let mut seen: Vec<Op> = samples.iter().map(|s| s.op()).collect();
    seen.sort();
    seen.dedup();
    let mut all = Op::ALL.to_vec();
    all.sort();
    assert_eq!(seen, all, "one sample per op");

    for (i, s) in samples.iter().enumerate() {
        let data: Vec<u8> = (0..i * 37).map(|x| x as u8).collect();
        let bytes = encode_any(i as u64 + 1, 5, s, &data);
        let frames = FrameDecoder::new().feed_all(&bytes).unwrap();
        assert_eq!(frames.len(), 1);
        let f = &frames[0];
        assert_eq!(f.header.id, i as u64 + 1);
        assert_eq!(f.header.aux, 5);
        assert_eq!(f.op(), Some(s.op()));
        assert_eq!(f.data, data);
        let back = AnyRequest::decode(f.op().unwrap(), &f.body).unwrap();
        assert_eq!(&back, s);
        assert_eq!(Op::try_from(s.op() as u16).unwrap(), s.op());
        assert!(!s.op().name().is_empty());
    }
}

fn reply_rt<R: Request>(rep: R::Reply, data: &[u8])
where
    R::Reply: PartialEq + std::fmt::Debug + Clone,
{
    let f = encode_reply(7, R::OP, &rep, data).unwrap();
    let mut bytes = Vec::new();
    f.write_to(&mut bytes).unwrap();
    let frame = FrameDecoder::new().feed_all(&bytes).unwrap().remove(0);
    assert!(frame.header.is_reply());
    let r = Reply::from_frame(frame).unwrap();
    assert_eq!(r.id, 7);
    let (back, d) = r.decode::<R>().unwrap();
    assert_eq!(back, rep);
    assert_eq!(d, data);
}

#[test]
fn replies_round_trip() {
    reply_rt::<Hello>(
        HelloRep {
            version: 1,
            features: 0,
            session_id: 3,
            daemon: "libcephfsd 0.1".into(),
        },
        &[],
    );
    reply_rt::<NoopReq>((), &[]);
    reply_rt::<StatusReq>(
        StatusRep {
            daemon: "d".into(),
            pid: 1,
            uptime_secs: 2,
            sessions: vec![SessionInfo {
                id: 1,
                client: "c".into(),
                peer_pid: 3,
                peer_uid: 0,
                handles: 4,
                ops: 5,
                in_flight: 0,
            }],
            mounts: vec![MountInfo {
                key: "k".into(),
                client_id: "samba".into(),
                filesystem: None,
                config_hash: 9,
                refcount: 2,
                idle_secs: Some(3),
            }],
            total_handles: 4,
            total_ops: 5,
            ops: vec![OpStats {
                op: "Noop".into(),
                count: 1,
                errors: 0,
                mean_us: 3,
                p50_us: 3,
                p99_us: 4,
                max_us: 5,
            }],
            read_ahead: ReadAheadInfo {
                max_bytes: 6,
                held_bytes: 7,
                reads: 8,
                hits: 9,
                stale: 10,
            },
            heap: HeapInfo {
                keep_bytes: 11,
                in_use_bytes: 12,
                freed_bytes: 13,
                trims: 14,
                given_back_bytes: 15,
            },
            shared: SharedInfo {
                max_bytes: 16,
                shared_bytes: 17,
                areas: 1,
            },
        },
        &[],
    );
    reply_rt::<RegisterCredsReq>(RegisterCredsRep { cred: 1 }, &[]);
    reply_rt::<ShareMemReq>(ShareMemRep { shared: true }, &[]);
    reply_rt::<ReadShmReq>(ReadShmRep { n: 8 << 20 }, &[]);
    reply_rt::<MountReq>(
        MountRep {
            mount: MountId::new(1, 2),
            root: Ino::new(2, 3),
            stat: stat(1),
        },
        &[],
    );
    reply_rt::<LookupReq>(entry(5), &[]);
    let xattrs = Xattrs {
        values: vec![
            XattrValue::Value(vec![0, 1, 2]),
            XattrValue::Absent,
            XattrValue::Unknown,
        ],
        list: Some(b"user.a\0security.NTACL\0".to_vec()),
    };
    reply_rt::<LookupPlusReq>(
        LookupPlusRep {
            entry: entry(9),
            xattrs: xattrs.clone(),
            via: vec![1, 0x1000_0000_0001],
        },
        &[],
    );
    reply_rt::<EpochsReq>(
        EpochsRep {
            path: "/run/libcephfsd.sock.epochs".into(),
            token: 0x1234_5678_9abc,
        },
        &[],
    );
    reply_rt::<FindNameReq>(
        FindNameRep {
            name: "readme.txt".into(),
        },
        &[],
    );
    reply_rt::<LookupScanReq>(
        LookupScanRep::Found(LookupPlusRep {
            entry: entry(9),
            xattrs: xattrs.clone(),
            via: vec![1],
        }),
        &[],
    );
    for case_match in [None, Some("readme.txt".to_string())] {
        reply_rt::<LookupScanReq>(LookupScanRep::Missing { case_match }, &[]);
    }
    reply_rt::<GetAttrPlusReq>(
        GetAttrPlusRep {
            stat: stat(4),
            xattrs: xattrs.clone(),
        },
        &[],
    );
    reply_rt::<ReadDirPlusReq>(
        ReadDirPlusRep {
            entries: vec![DirEntryPlus {
                name: "x".into(),
                stat: stat(2),
                xattrs,
                ino: Some(Ino::new(7, 1)),
            }],
            eof: false,
        },
        &[],
    );
    reply_rt::<WalkReq>(entry(6), &[]);
    reply_rt::<LookupInodeReq>(entry(7), &[]);
    reply_rt::<GetAttrReq>(stat(8), &[]);
    reply_rt::<ForgetReq>(ForgetRep { released: 2 }, &[]);
    reply_rt::<UnlinkReq>(
        RemoveRep {
            dir: Some(DirAfter {
                stat: stat(5),
                epoch: 3,
            }),
        },
        &[],
    );
    reply_rt::<RmdirReq>(RemoveRep { dir: None }, &[]);
    let open_rep = OpenRep {
        fh: Fh::new(1, 1),
        ino: Ino::new(2, 2),
        stat: stat(3),
        created: true,
        dir: Some(DirAfter {
            stat: stat(4),
            epoch: 9,
        }),
    };
    reply_rt::<OpenReq>(open_rep, &[]);
    reply_rt::<OpenPlusReq>(
        OpenPlusRep {
            open: OpenRep {
                created: false,
                dir: None,
                ..open_rep
            },
            xattrs: Xattrs {
                values: vec![XattrValue::Absent, XattrValue::Value(b"v".to_vec())],
                list: Some(b"user.a\0".to_vec()),
            },
        },
        &[],
    );
    reply_rt::<OpenReadReq>(
        OpenReadRep {
            open: OpenRep {
                created: false,
                dir: None,
                ..open_rep
            },
            whole: true,
        },
        b"the file",
    );
    reply_rt::<OpenInoReadReq>(
        OpenInoReadRep {
            fh: open_rep.fh,
            stat: stat(4),
            whole: true,
        },
        b"the file",
    );
    reply_rt::<SetXattrReq>(
        XattrChangeRep {
            stat: stat(5),
            after: Some(XattrAfter {
                value: XattrValue::Value(b"v".to_vec()),
                list: Some(b"user.a\0".to_vec()),
                epoch: 9,
            }),
        },
        &[],
    );
    reply_rt::<RemoveXattrReq>(
        XattrChangeRep {
            stat: stat(6),
            after: None,
        },
        &[],
    );
    reply_rt::<ReadReq>((), &[1, 2, 3, 4]);
    reply_rt::<ReadToReq>(ReadToRep { placed: 1 << 20 }, &[]);
    reply_rt::<ReadToReq>(ReadToRep { placed: 0 }, &[5, 6]);
    reply_rt::<WriteReq>(WriteRep { written: 4 }, &[]);
    reply_rt::<WriteFromReq>(
        WriteFromRep {
            taken: true,
            written: 1 << 20,
        },
        &[],
    );
    reply_rt::<WriteFromReq>(
        WriteFromRep {
            taken: false,
            written: 0,
        },
        &[],
    );
    reply_rt::<SendToReq>(
        SendToRep {
            taken: true,
            sent: 84 + (1 << 20),
        },
        &[],
    );
    reply_rt::<SendToReq>(
        SendToRep {
            taken: false,
            sent: 0,
        },
        &[],
    );
    reply_rt::<RecvFromReq>(
        RecvFromRep {
            taken: true,
            written: 1 << 20,
        },
        &[],
    );
    reply_rt::<LseekReq>(LseekRep { offset: 99 }, &[]);
    reply_rt::<GetLkReq>(Flock::default(), &[]);
    reply_rt::<ReadDirReq>(
        ReadDirRep {
            entries: vec![
                DirEntry {
                    name: ".".into(),
                    stat: stat(1),
                },
                DirEntry {
                    name: "x".into(),
                    stat: stat(2),
                },
            ],
            eof: true,
        },
        &[],
    );
    reply_rt::<ReadlinkReq>(
        ReadlinkRep {
            target: "a/b".into(),
        },
        &[],
    );
    reply_rt::<StatFsReq>(
        StatFs {
            bsize: 4096,
            namemax: 255,
            ..StatFs::default()
        },
        &[],
    );
    reply_rt::<GetXattrReq>(XattrSizeRep { size: 3 }, b"abc");
    reply_rt::<ListXattrReq>(XattrSizeRep { size: 8 }, b"user.a\0\0");
}

#[test]
fn error_replies_carry_errno_and_message() {
    let f = encode_error(9, Op::Lookup, Errno::ENOENT, Some("no such name"));
    let mut bytes = Vec::new();
    f.write_to(&mut bytes).unwrap();
    let r = Reply::from_frame(FrameDecoder::new().feed_all(&bytes).unwrap().remove(0)).unwrap();
    assert_eq!(r.errno(), Some(Errno::ENOENT));
    assert_eq!(r.message(), "no such name");
    assert_eq!(r.decode::<LookupReq>().unwrap_err(), Errno::ENOENT);

    let f = encode_error(9, Op::Lookup, Errno::EACCES, None);
    let mut bytes = Vec::new();
    f.write_to(&mut bytes).unwrap();
    let r = Reply::from_frame(FrameDecoder::new().feed_all(&bytes).unwrap().remove(0)).unwrap();
    assert_eq!(r.message(), "");
    // A reply decoded as the wrong request type is a protocol error.
    assert_eq!(r.decode::<GetAttrReq>().unwrap_err(), Errno::EPROTO);
}

#[test]
fn pushes_round_trip() {
    for p in [
        Push::Invalidate {
            mount: MountId::new(1, 1),
            ino: InodeKey {
                ino: 0x1000,
                snap: CEPH_NOSNAP,
            },
        },
        Push::Shutdown {
            reason: "SIGTERM".into(),
        },
        Push::AreaWanted,
    ] {
        let f = encode_push(&p).unwrap();
        let mut bytes = Vec::new();
        f.write_to(&mut bytes).unwrap();
        let fr = FrameDecoder::new().feed_all(&bytes).unwrap().remove(0);
        assert!(fr.header.is_push());
        assert_eq!(fr.op(), None);
        assert_eq!(decode_body::<Push>(&fr.body).unwrap(), p);
    }
}

#[test]
fn byte_by_byte_and_concatenated_frames() {
    let samples = sample_requests();
    let mut stream = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        stream.extend(encode_any(i as u64, 0, s, &vec![0xAB; i % 5]));
    }
    // One byte at a time.
    let mut dec = FrameDecoder::new();
    let mut got = Vec::new();
    for b in &stream {
        let (used, f) = dec.feed(std::slice::from_ref(b)).unwrap();
        assert_eq!(used, 1);
        got.extend(f);
    }
    assert_eq!(got.len(), samples.len());
    assert!(dec.is_idle());
    // All at once.
    let all = FrameDecoder::new().feed_all(&stream).unwrap();
    assert_eq!(all, got);
    // Random chunking.
    let mut rng = Rng(12345);
    let mut dec = FrameDecoder::new();
    let mut rest: &[u8] = &stream;
    let mut n = 0;
    while !rest.is_empty() {
        let k = (rng.next() as usize % 300 + 1).min(rest.len());
        let mut chunk = &rest[..k];
        while !chunk.is_empty() {
            let (used, f) = dec.feed(chunk).unwrap();
            chunk = &chunk[used..];
            n += f.is_some() as usize;
        }
        rest = &rest[k..];
    }
    assert_eq!(n, samples.len());
}

#[test]
fn bulk_data_read_directly_into_the_frame() {
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
    let req = WriteReq {
        fh: Fh::new(1, 1),
        offset: 5,
    };
    let bytes = encode_any(9, 3, &AnyRequest::Write(req), &data);
    let split = bytes.len() - data.len();
    let mut dec = FrameDecoder::new();
    // Header and body through feed; nothing wanted before the body is complete.
    let (used, f) = dec.feed(&bytes[..split - 1]).unwrap();
    assert_eq!((used, f.is_none()), (split - 1, true));
    assert_eq!(dec.data_wanted(), 0);
    dec.feed(&bytes[split - 1..split]).unwrap();
    assert_eq!(dec.data_wanted(), data.len());
    // The data in odd pieces straight into the frame.
    let mut src: &[u8] = &bytes[split..];
    while dec.data_wanted() > 0 {
        let n = dec
            .read_data(|buf| {
                let k = buf.len().min(src.len()).min(77_777);
                buf[..k].copy_from_slice(&src[..k]);
                Ok(k)
            })
            .unwrap();
        src = &src[n..];
    }
    let (used, f) = dec.feed(&[]).unwrap();
    assert_eq!(used, 0);
    let f = f.expect("frame complete");
    assert_eq!(f.header.id, 9);
    assert_eq!(f.data, data);
    assert!(dec.is_idle());
    // A read error loses nothing already received.
    let mut dec = FrameDecoder::new();
    dec.feed(&bytes[..split]).unwrap();
    let e = dec
        .read_data(|_| Err(std::io::ErrorKind::WouldBlock.into()))
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
    assert_eq!(dec.data_wanted(), data.len());
}

fn read_reply_bytes(id: u64, data: &[u8]) -> Vec<u8> {
    let f = encode_reply(id, Op::Read, &(), data).unwrap();
    let mut v = Vec::new();
    f.write_to(&mut v).unwrap();
    v
}

#[test]
fn sink_receives_data_through_feed_and_read_data() {
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 13) as u8).collect();
    let bytes = read_reply_bytes(4, &data);
    // Byte by byte through feed: every data byte lands in the sink, none in the frame.
    let mut out = vec![0xAAu8; data.len() + 10];
    // SAFETY: `out` outlives `dec` and is not touched until the decoder is dropped.
    let sink = unsafe { DataSink::from_slice(&mut out) };
    let mut dec = FrameDecoder::new();
    let mut frames = Vec::new();
    let mut asked = Vec::new();
    for b in &bytes {
        let (_, f) = dec
            .feed_with(std::slice::from_ref(b), |h| {
                asked.push(h.id);
                Some(sink)
            })
            .unwrap();
        frames.extend(f);
    }
    drop(dec);
    assert_eq!(asked, vec![4], "asked once per frame, with its header");
    assert_eq!(frames.len(), 1);
    assert!(frames[0].sunk && frames[0].data.is_empty());
    assert_eq!(&out[..data.len()], &data[..]);
    assert_eq!(&out[data.len()..], &[0xAA; 10], "nothing past the data");
    let r = Reply::from_frame(frames.remove(0)).unwrap();
    assert_eq!(r.sunk, Some(data.len()));

    // Header through feed, data through read_data in odd pieces.
    let mut out = vec![0u8; data.len()];
    // SAFETY: as above.
    let sink = unsafe { DataSink::from_slice(&mut out) };
    let split = bytes.len() - data.len();
    let mut dec = FrameDecoder::new();
    dec.feed_with(&bytes[..split], |_| Some(sink)).unwrap();
    assert_eq!(dec.sinking(), Some(4));
    let mut src = &bytes[split..];
    while dec.data_wanted() > 0 {
        let n = dec
            .read_data(|buf| {
                let k = buf.len().min(src.len()).min(33_333);
                buf[..k].copy_from_slice(&src[..k]);
                Ok(k)
            })
            .unwrap();
        src = &src[n..];
    }
    let f = dec.feed(&[]).unwrap().1.unwrap();
    drop(dec);
    assert!(f.sunk);
    assert_eq!(out, data);
}

#[test]
fn sink_too_small_or_refused_leaves_data_in_the_frame() {
    let data = vec![7u8; 1000];
    let bytes = read_reply_bytes(5, &data);
    let mut small = vec![0u8; 999];
    // SAFETY: `small` outlives the decoder, which never writes into it (too small).
    let sink = unsafe { DataSink::from_slice(&mut small) };
    let mut dec = FrameDecoder::new();
    let f = dec.feed_with(&bytes, |_| Some(sink)).unwrap().1.unwrap();
    assert!(!f.sunk);
    assert_eq!(f.data, data);
    drop(dec);
    assert_eq!(small, vec![0u8; 999]);
    let f = FrameDecoder::new()
        .feed_with(&bytes, |_| None)
        .unwrap()
        .1
        .unwrap();
    assert_eq!((f.sunk, f.data.len()), (false, 1000));
}

#[test]
fn discarded_sink_is_never_written_again() {
    let data: Vec<u8> = (0..100_000u32).map(|i| i as u8 | 1).collect();
    let bytes = read_reply_bytes(6, &data);
    let split = bytes.len() - data.len();
    let mut out = vec![0u8; data.len()];
    // SAFETY: `out` outlives the decoder.
    let sink = unsafe { DataSink::from_slice(&mut out) };
    let mut dec = FrameDecoder::new();
    // Header, body and the first 1000 data bytes; then the owner takes the buffer back.
    dec.feed_with(&bytes[..split + 1000], |_| Some(sink))
        .unwrap();
    assert_eq!(dec.discard_data(), Some(6));
    assert_eq!(dec.sinking(), None);
    assert_eq!(
        dec.data_wanted(),
        0,
        "discarded data is not read into a buffer"
    );
    assert_eq!(dec.discard_data(), None);
    // The rest is consumed and dropped; the next frame decodes normally.
    let mut rest = bytes[split + 1000..].to_vec();
    rest.extend(read_reply_bytes(7, b"next"));
    let frames = dec.feed_all(&rest).unwrap();
    drop(dec);
    assert_eq!(frames.len(), 2);
    assert_eq!((frames[0].header.id, frames[0].sunk), (6, false));
    assert!(frames[0].data.is_empty());
    assert_eq!(frames[1].data, b"next");
    assert_eq!(&out[..1000], &data[..1000]);
    assert!(out[1000..].iter().all(|b| *b == 0), "written after discard");
}

#[test]
fn direct_reads_grow_with_what_arrives() {
    // A header announcing MAX_DATA must not allocate it before bytes arrive.
    let h = Header {
        op: Op::Write as u16,
        data_len: MAX_DATA,
        ..Header::default()
    };
    let mut dec = FrameDecoder::new();
    dec.feed(&header_bytes(h)).unwrap();
    // (the empty body of WriteReq is invalid bincode, but framing does not care)
    let mut offered = 0;
    dec.read_data(|buf| {
        offered = buf.len();
        Ok(0)
    })
    .unwrap();
    assert!(offered <= 1 << 20, "offered {offered} bytes at once");
}

#[test]
fn truncated_frame_is_incomplete_not_an_error() {
    let bytes = encode_any(1, 0, &sample_requests()[7], b"12345");
    for cut in 0..bytes.len() {
        let mut dec = FrameDecoder::new();
        let frames = dec.feed_all(&bytes[..cut]).unwrap();
        assert!(frames.is_empty(), "cut at {cut}");
        assert_eq!(dec.is_idle(), cut == 0);
    }
}

fn header_bytes(h: Header) -> Vec<u8> {
    h.to_bytes().to_vec()
}

#[test]
fn oversized_lengths_are_rejected_before_allocation() {
    let h = Header {
        body_len: MAX_BODY + 1,
        op: Op::Noop as u16,
        ..Header::default()
    };
    let mut dec = FrameDecoder::new();
    assert_eq!(
        dec.feed_all(&header_bytes(h)).unwrap_err(),
        FrameError::BodyTooLarge(MAX_BODY + 1)
    );
    // Poisoned afterwards.
    assert_eq!(dec.feed(&[0]).unwrap_err(), FrameError::Poisoned);

    let h = Header {
        data_len: u32::MAX,
        op: Op::Noop as u16,
        ..Header::default()
    };
    assert_eq!(
        FrameDecoder::new().feed_all(&header_bytes(h)).unwrap_err(),
        FrameError::DataTooLarge(u32::MAX)
    );
    // At the limits is fine (the decoder just waits for the bytes).
    let h = Header {
        body_len: MAX_BODY,
        data_len: MAX_DATA,
        op: Op::Write as u16,
        ..Header::default()
    };
    assert!(FrameDecoder::new()
        .feed_all(&header_bytes(h))
        .unwrap()
        .is_empty());
    // The sender refuses to build oversized frames.
    let big = vec![0u8; MAX_DATA as usize + 1];
    assert_eq!(
        encode_request(
            1,
            0,
            &WriteReq {
                fh: Fh(1),
                offset: 0
            },
            &big
        )
        .unwrap_err(),
        FrameError::TooLarge
    );
}

#[test]
fn unknown_ops_and_flags_are_rejected() {
    for op in [0u16, 7, 39, 45, 99, 1000, u16::MAX] {
        let h = Header {
            op,
            ..Header::default()
        };
        assert_eq!(
            FrameDecoder::new().feed_all(&header_bytes(h)).unwrap_err(),
            FrameError::UnknownOp(op)
        );
        assert!(Op::try_from(op).is_err());
    }
    for flags in [4u16, 0x8000, FLAG_REPLY | FLAG_PUSH, 0xffff] {
        let h = Header {
            op: 2,
            flags,
            ..Header::default()
        };
        assert_eq!(
            FrameDecoder::new().feed_all(&header_bytes(h)).unwrap_err(),
            FrameError::UnknownFlags(flags)
        );
    }
    // A push with an op or id is invalid.
    let h = Header {
        op: 2,
        flags: FLAG_PUSH,
        ..Header::default()
    };
    assert_eq!(
        FrameDecoder::new().feed_all(&header_bytes(h)).unwrap_err(),
        FrameError::BadPush
    );
}

#[test]
fn garbage_bodies_fail_to_decode() {
    // Valid header, garbage body, for every op.
    let mut rng = Rng(7);
    for &op in Op::ALL {
        for len in [1usize, 3, 17, 200] {
            let body: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            // Whatever the outcome, no panic; and trailing bytes are always rejected.
            let _ = AnyRequest::decode(op, &body);
        }
    }
    // Trailing bytes after a valid body.
    let mut body = encode_body(&GetAttrReq { ino: Ino(5) }).unwrap();
    body.push(0);
    assert!(matches!(
        AnyRequest::decode(Op::GetAttr, &body),
        Err(FrameError::BadBody(_))
    ));
    // A Vec length claiming far more than the limit.
    let body = [
        0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 1, 2, 3,
    ];
    assert!(AnyRequest::decode(Op::Forget, &body).is_err());
    let body = [0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
    assert!(AnyRequest::decode(Op::ReadDir, &body).is_err());
    // Empty body for a non-empty request.
    assert!(AnyRequest::decode(Op::Lookup, &[]).is_err());
    // Invalid UTF-8 in a name.
    let mut body = encode_body(&Ino(1)).unwrap();
    body.extend([2, 0xff, 0xfe]);
    assert!(AnyRequest::decode(Op::Lookup, &body).is_err());
}

/// xorshift64*: a seeded deterministic generator, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
}

#[test]
fn random_garbage_never_panics_and_errors_stick() {
    let mut rng = Rng(0x5eed);
    for round in 0..20_000 {
        let len = (rng.next() % 200) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if round % 3 == 0 && len >= HEADER_LEN {
            // Plausible header: small lengths, a known op, so the body path runs too.
            let ops = Op::ALL;
            let h = Header {
                body_len: (rng.next() % 64) as u32,
                data_len: (rng.next() % 64) as u32,
                id: rng.next(),
                op: ops[(rng.next() as usize) % ops.len()] as u16,
                flags: 0,
                aux: 0,
            };
            bytes[..HEADER_LEN].copy_from_slice(&h.to_bytes());
        }
        let mut dec = FrameDecoder::new();
        match dec.feed_all(&bytes) {
            Ok(frames) => {
                for f in frames {
                    if let Some(op) = f.op() {
                        let _ = AnyRequest::decode(op, &f.body);
                    }
                    assert!(f.body.len() <= MAX_BODY as usize);
                }
            }
            Err(_) => assert_eq!(dec.feed(&[1]).unwrap_err(), FrameError::Poisoned),
        }
    }
}

#[test]
fn names_are_validated() {
    assert_eq!(check_name(""), Err(Errno::EINVAL));
    assert_eq!(check_name("/"), Err(Errno::EINVAL));
    assert_eq!(check_name("a/b"), Err(Errno::EINVAL));
    assert_eq!(check_name("a\0b"), Err(Errno::EINVAL));
    assert_eq!(check_name(&"x".repeat(256)), Err(Errno::ENAMETOOLONG));
    assert_eq!(check_name(&"x".repeat(255)), Ok(()));
    assert_eq!(check_name(".."), Ok(()));
}

#[test]
fn handles_and_errno_formatting() {
    let i = Ino::new(7, 0xdead_beef);
    assert_eq!(i.slot(), 7);
    assert_eq!(i.generation(), 0xdead_beef);
    assert_eq!(format!("{i:?}"), "Ino(7:3735928559)");
    assert_eq!(
        Errno::ENOENT.to_string(),
        "ENOENT (No such file or directory)"
    );
    assert_eq!(format!("{:?}", Errno(4242)), "Errno(4242)");
    assert_eq!(Errno::from_ret(-2), Errno::ENOENT);
    assert_eq!(Errno::from_ret(0), Errno::EIO);
    assert_eq!(Errno::ENOTSUP, Errno::EOPNOTSUPP);
}

// ------------------------------------------------------------------ client

/// A scripted fake daemon on a socketpair, run on a thread (test only).
fn fake_daemon(script: impl FnOnce(&mut UnixStream, &mut FrameDecoder) + Send + 'static) -> Client {
    let (a, mut b) = UnixStream::pair().unwrap();
    std::thread::spawn(move || {
        let mut dec = FrameDecoder::new();
        // Answer Hello.
        let f = read_frame(&mut b, &mut dec).unwrap();
        assert_eq!(f.op(), Some(Op::Hello));
        let h: Hello = decode_body(&f.body).unwrap();
        assert_eq!(h.min_version, PROTOCOL_VERSION);
        let rep = HelloRep {
            version: 1,
            features: 0,
            session_id: 42,
            daemon: "fake".into(),
        };
        encode_reply(f.header.id, Op::Hello, &rep, Vec::new())
            .unwrap()
            .write_to(&mut b)
            .unwrap();
        script(&mut b, &mut dec);
    });
    Client::handshake(a, "test").unwrap()
}

fn read_frame(s: &mut UnixStream, dec: &mut FrameDecoder) -> Option<Frame> {
    use std::io::Read;
    let mut b = [0u8; 1];
    loop {
        if s.read(&mut b).ok()? == 0 {
            return None;
        }
        if let (_, Some(f)) = dec.feed(&b).unwrap() {
            return Some(f);
        }
    }
}

#[test]
fn client_stashes_out_of_order_replies_and_pushes() {
    let mut c = fake_daemon(|s, dec| {
        // Two requests arrive; answer the second first, with a push in between.
        let f1 = read_frame(s, dec).unwrap();
        let f2 = read_frame(s, dec).unwrap();
        assert_eq!(f2.data, b"payload");
        encode_reply(
            f2.header.id,
            Op::Write,
            &WriteRep { written: 7 },
            Vec::new(),
        )
        .unwrap()
        .write_to(s)
        .unwrap();
        encode_push(&Push::Shutdown { reason: "x".into() })
            .unwrap()
            .write_to(s)
            .unwrap();
        encode_reply(f1.header.id, Op::Noop, &(), Vec::new())
            .unwrap()
            .write_to(s)
            .unwrap();
        // Then an error reply for a third.
        let f3 = read_frame(s, dec).unwrap();
        encode_error(f3.header.id, Op::GetAttr, Errno::EBADF, Some("stale"))
            .write_to(s)
            .unwrap();
        let _ = read_frame(s, dec);
    });
    assert_eq!(c.session_id(), 42);
    let id1 = c.submit(0, &NoopReq, &[]).unwrap();
    let (w, _) = c
        .call(
            3,
            &WriteReq {
                fh: Fh(9),
                offset: 0,
            },
            b"payload",
        )
        .unwrap();
    assert_eq!(w.written, 7);
    // The Noop reply arrived after ours: wait() finds it stashed or reads it.
    let r = c.wait(id1).unwrap();
    r.decode::<NoopReq>().unwrap();
    assert_eq!(c.take_pushes(), vec![Push::Shutdown { reason: "x".into() }]);
    assert_eq!(
        c.call(1, &GetAttrReq { ino: Ino(5) }, &[]).unwrap_err(),
        Errno::EBADF
    );
    assert_eq!(c.last_error(), "stale");
}

#[test]
fn client_hangup_fails_pending_calls_with_eio() {
    let mut c = fake_daemon(|s, dec| {
        // Read two requests and hang up without answering.
        let _ = read_frame(s, dec);
        let _ = read_frame(s, dec);
    });
    let a = c.submit(0, &NoopReq, &[]).unwrap();
    let b = c.submit(0, &NoopReq, &[]).unwrap();
    assert_eq!(c.wait(a).unwrap().errno(), Some(Errno::EIO));
    assert_eq!(c.take(b).unwrap().errno(), Some(Errno::EIO));
    assert!(c.is_dead());
    assert_eq!(c.call(0, &NoopReq, &[]).unwrap_err(), Errno::EIO);
    assert!(c.submit(0, &NoopReq, &[]).is_err());
}

#[test]
fn client_poll_is_non_blocking() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let mut c = fake_daemon(move |s, dec| {
        let f = read_frame(s, dec).unwrap();
        rx.recv().unwrap();
        encode_reply(f.header.id, Op::Noop, &(), Vec::new())
            .unwrap()
            .write_to(s)
            .unwrap();
        let _ = read_frame(s, dec);
    });
    let id = c.submit(0, &NoopReq, &[]).unwrap();
    // Nothing yet: returns at once with nothing.
    assert!(c.poll_completed().unwrap().is_empty());
    tx.send(()).unwrap();
    let mut got = Vec::new();
    for _ in 0..1000 {
        got = c.poll_completed().unwrap();
        if !got.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, id);
    got.remove(0).decode::<NoopReq>().unwrap();
}

#[test]
fn client_rejects_garbage_from_daemon() {
    let mut c = fake_daemon(|s, dec| {
        let _ = read_frame(s, dec);
        s.write_all(&[0xff; 64]).unwrap();
        let _ = read_frame(s, dec);
    });
    assert_eq!(c.call(0, &NoopReq, &[]).unwrap_err(), Errno::EPROTO);
    assert!(c.is_dead());
}

#[test]
fn large_payload_round_trip_through_client() {
    let mut c = fake_daemon(|s, dec| {
        let f = read_frame_fast(s, dec).unwrap();
        // Echo the payload back as a read reply.
        encode_reply(f.header.id, Op::Read, &(), f.data)
            .unwrap()
            .write_to(s)
            .unwrap();
        let _ = read_frame_fast(s, dec);
    });
    let payload: Vec<u8> = (0..8 << 20).map(|i: u32| (i * 7) as u8).collect();
    // Sent as a Read request for the test's sake (the fake daemon echoes data).
    let id = c
        .submit(
            0,
            &ReadReq {
                fh: Fh(1),
                offset: 0,
                len: 0,
            },
            &payload,
        )
        .unwrap();
    let r = c.wait(id).unwrap();
    let ((), data) = r.decode::<ReadReq>().unwrap();
    assert_eq!(data, payload);
}

#[test]
fn client_call_into_and_release_sink() {
    let payload: Vec<u8> = (0..3 << 20).map(|i: u32| (i * 11) as u8).collect();
    let p2 = payload.clone();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let mut c = fake_daemon(move |s, dec| {
        // 1: call_into gets the payload straight into its buffer.
        let f = read_frame_fast(s, dec).unwrap();
        encode_reply(f.header.id, Op::Read, &(), &p2[..])
            .unwrap()
            .write_to(s)
            .unwrap();
        // 2: a submitted read whose sink is released before its reply is read.
        let f = read_frame_fast(s, dec).unwrap();
        rx.recv().unwrap();
        encode_reply(f.header.id, Op::Read, &(), &p2[..])
            .unwrap()
            .write_to(s)
            .unwrap();
        // 3: a reply longer than call_into's buffer.
        let f = read_frame_fast(s, dec).unwrap();
        encode_reply(f.header.id, Op::Read, &(), &p2[..10])
            .unwrap()
            .write_to(s)
            .unwrap();
        let _ = read_frame_fast(s, dec);
    });
    let req = ReadReq {
        fh: Fh(1),
        offset: 0,
        len: 0,
    };
    let mut out = vec![0u8; payload.len() + 5];
    let ((), n) = c.call_into(0, &req, &[], &mut out).unwrap();
    assert_eq!(n, payload.len());
    assert_eq!(&out[..n], &payload[..]);

    let mut gone = vec![0u8; payload.len()];
    // SAFETY: `gone` outlives the client and is only read after release_sink.
    let sink = unsafe { DataSink::from_slice(&mut gone) };
    let id = c.submit_into(0, &req, &[], sink).unwrap();
    c.release_sink(id);
    tx.send(()).unwrap();
    let r = c.wait(id).unwrap();
    assert_eq!(r.sunk, None);
    assert_eq!(r.data, payload, "a released sink's reply keeps its data");

    let mut tiny = [0u8; 4];
    assert_eq!(
        c.call_into(0, &req, &[], &mut tiny).unwrap_err(),
        Errno::EPROTO
    );
    drop(c);
    assert!(gone.iter().all(|b| *b == 0), "released sink was written");
}

/// The fake daemon answers ReadTo `id`: `placed` bytes placed.
fn reply_read_to(s: &mut UnixStream, id: u64, placed: u32) {
    encode_reply(id, Op::ReadTo, &ReadToRep { placed }, Vec::new())
        .unwrap()
        .write_to(s)
        .unwrap();
}

fn read_to_req(addr: u64) -> ReadToReq {
    ReadToReq {
        fh: Fh(1),
        offset: 0,
        len: 4,
        addr,
        ahead_msecs: 0,
    }
}

#[test]
fn a_wait_times_out_except_while_the_daemon_may_write_into_this_process() {
    let mut c = fake_daemon(|s, dec| {
        // A Noop never answered, then a ReadTo answered after the client's timeout.
        let _noop = read_frame(s, dec).unwrap();
        let rt = read_frame(s, dec).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(400));
        reply_read_to(s, rt.header.id, 4);
        let _ = read_frame(s, dec);
    });
    c.set_timeout(Some(std::time::Duration::from_millis(100)))
        .unwrap();
    let id = c.submit(0, &NoopReq, &[]).unwrap();
    assert_eq!(c.wait(id).unwrap_err(), Errno::ETIMEDOUT);
    let t = std::time::Instant::now();
    let id = c.submit(0, &read_to_req(0x1000), &[]).unwrap();
    let r = c.wait(id).unwrap();
    assert!(t.elapsed() >= std::time::Duration::from_millis(300));
    assert_eq!(r.decode::<ReadToReq>().unwrap().0.placed, 4);
}

#[test]
fn settle_waits_for_the_reply_of_a_read_to() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let replied = Arc::new(AtomicBool::new(false));
    let r2 = replied.clone();
    let mut c = fake_daemon(move |s, dec| {
        let f = read_frame(s, dec).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(150));
        r2.store(true, Ordering::SeqCst);
        reply_read_to(s, f.header.id, 4);
        let _ = read_frame(s, dec);
    });
    let id = c.submit(0, &read_to_req(0x1000), &[]).unwrap();
    c.settle(id);
    assert!(
        replied.load(Ordering::SeqCst),
        "settle returned before the reply"
    );
    assert!(c.take(id).is_none(), "the settled reply is dropped");
    assert_eq!(c.pending_count(), 0);
    c.call(0, &NoopReq, &[]).unwrap_err(); // the fake answers nothing more: EIO at hang-up
}

/// A connection that fails while a request that uses this process's memory is pending
/// completes it only after the daemon has closed.
fn failing_connection_waits_for_the_daemon_to_close<R: Request>(req: R) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let closed = Arc::new(AtomicBool::new(false));
    let c2 = closed.clone();
    let mut c = fake_daemon(move |s, dec| {
        let _ = read_frame(s, dec).unwrap();
        // A protocol violation; the client stops sending (EOF for us) but must wait for
        // our close, as accesses to its memory may still be under way.
        s.write_all(&[0xff; 64]).unwrap();
        assert!(read_frame(s, dec).is_none(), "client shut its side");
        std::thread::sleep(std::time::Duration::from_millis(150));
        c2.store(true, Ordering::SeqCst);
        // Dropping `s` closes the connection.
    });
    let id = c.submit(0, &req, &[]).unwrap();
    let r = c.wait(id).unwrap();
    assert_eq!(r.errno(), Some(Errno::EPROTO));
    assert!(
        closed.load(Ordering::SeqCst),
        "completed before the daemon closed"
    );
    assert!(c.is_dead());
}

#[test]
fn a_failing_connection_with_a_read_to_pending_waits_for_the_daemon_to_close() {
    failing_connection_waits_for_the_daemon_to_close(read_to_req(0x1000));
}

#[test]
fn a_failing_connection_with_a_write_from_pending_waits_for_the_daemon_to_close() {
    failing_connection_waits_for_the_daemon_to_close(WriteFromReq {
        fh: Fh(1),
        offset: 0,
        len: 4,
        addr: 0x1000,
    });
}

#[test]
fn a_failing_connection_with_a_read_shm_pending_waits_for_the_daemon_to_close() {
    // The daemon may still be reading into the shared area: its part is not reused
    // before the daemon is done.
    failing_connection_waits_for_the_daemon_to_close(ReadShmReq {
        fh: Fh(1),
        offset: 0,
        len: 4,
        at: 0,
        ahead_msecs: 0,
    });
}

fn read_frame_fast(s: &mut UnixStream, dec: &mut FrameDecoder) -> Option<Frame> {
    use std::io::Read;
    let mut b = vec![0u8; 65536];
    loop {
        let n = s.read(&mut b).ok()?;
        if n == 0 {
            return None;
        }
        let mut rest = &b[..n];
        while !rest.is_empty() {
            let (used, f) = dec.feed(rest).unwrap();
            rest = &rest[used..];
            if let Some(f) = f {
                assert!(
                    rest.is_empty(),
                    "test reader assumes one frame per exchange"
                );
                return Some(f);
            }
        }
    }
}

#[test]
fn big_frames_in_small_chunks_grow_buffers_geometrically() {
    let data = vec![0x33u8; 16 << 20];
    let f = encode_request(
        1,
        0,
        &WriteReq {
            fh: Fh(1),
            offset: 0,
        },
        &data,
    )
    .unwrap();
    let mut bytes = Vec::new();
    f.write_to(&mut bytes).unwrap();
    let mut dec = FrameDecoder::new();
    let mut got = None;
    let mut caps = std::collections::BTreeSet::new();
    for chunk in bytes.chunks(4096) {
        let mut rest = chunk;
        while !rest.is_empty() {
            let (used, fr) = dec.feed(rest).unwrap();
            rest = &rest[used..];
            if let Some(c) = dec.partial_data_capacity() {
                caps.insert(c);
            }
            if fr.is_some() {
                got = fr;
            }
        }
    }
    let fr = got.unwrap();
    assert_eq!(fr.data, data);
    assert!(fr.data.capacity() <= data.len() * 2);
    // Few distinct capacities = few reallocations (doubling from 1 MiB to 16 MiB).
    assert!(caps.len() <= 8, "capacities {caps:?}");
}

#[test]
fn names_compare_like_samba() {
    assert!(names_equal_ignoring_case("ReadMe.TXT", "readme.txt"));
    assert!(names_equal_ignoring_case("Überß", "übERß"));
    assert!(!names_equal_ignoring_case("a.txt", "a.txt "));
    // One-to-many upper-casings are not applied (ß is not SS), as in strcasecmp_m.
    assert!(!names_equal_ignoring_case("straße", "STRASSE"));
    assert!(!names_equal_ignoring_case("abc", "abd"));
}

/// CPU time this thread has used.
fn thread_cpu() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes one timespec we own.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) },
        0
    );
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[test]
fn a_wait_polls_for_quick_replies_but_sleeps_through_bulk_ones() {
    let late = std::time::Duration::from_millis(300);
    let mut c = fake_daemon(move |s, dec| {
        for _ in 0..2 {
            let f = read_frame(s, dec).unwrap();
            std::thread::sleep(late);
            let op = f.op().unwrap();
            let frame = match op {
                Op::Noop => encode_reply(f.header.id, op, &(), Vec::new()),
                _ => encode_reply(
                    f.header.id,
                    op,
                    &SendToRep {
                        taken: true,
                        sent: 9,
                    },
                    Vec::new(),
                ),
            };
            frame.unwrap().write_to(s).unwrap();
        }
        let _ = read_frame(s, dec);
    });
    c.set_spin(std::time::Duration::from_secs(1));
    // A Noop: polled for (the control: this measures spinning).
    let (t, cpu) = (std::time::Instant::now(), thread_cpu());
    let id = c.submit(0, &NoopReq, &[]).unwrap();
    c.wait(id).unwrap();
    let (noop_wall, noop_cpu) = (t.elapsed(), thread_cpu() - cpu);
    // A SendTo (the daemon sends >= 64 KiB before it answers): slept through.
    let req = SendToReq {
        fh: Fh(1),
        offset: 0,
        len: 1 << 20,
        sock: 3,
        ahead_msecs: 0,
    };
    let (t, cpu) = (std::time::Instant::now(), thread_cpu());
    let id = c.submit(0, &req, b"hdr").unwrap();
    let (rep, _) = c.wait(id).unwrap().decode::<SendToReq>().unwrap();
    let (send_wall, send_cpu) = (t.elapsed(), thread_cpu() - cpu);
    assert_eq!(rep.sent, 9);
    assert!(noop_wall >= late && send_wall >= late);
    assert!(
        noop_cpu >= std::time::Duration::from_millis(60),
        "the Noop was polled for: {noop_cpu:?} of CPU in {noop_wall:?}"
    );
    assert!(
        send_cpu < std::time::Duration::from_millis(30),
        "the SendTo was slept through: {send_cpu:?} of CPU in {send_wall:?}"
    );
}
