// SPDX-License-Identifier: GPL-3.0-or-later
//! Fuzz the daemon's side of the protocol: arbitrary bytes, split at arbitrary points,
//! through FrameDecoder and then AnyRequest::decode, as libcephfsd's session reader does.
//! Run: `cd wire/fuzz && cargo +nightly fuzz run frame_decoder`.
#![no_main]

use ceph_rs_wire::{AnyRequest, FrameDecoder, FrameError, MAX_BODY, MAX_DATA};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    // First byte chooses the chunk size so that split headers/bodies are exercised.
    let Some((&chunk, bytes)) = input.split_first() else { return };
    let chunk = chunk as usize + 1;
    let mut dec = FrameDecoder::new();
    for piece in bytes.chunks(chunk) {
        let mut rest = piece;
        while !rest.is_empty() {
            match dec.feed(rest) {
                Ok((used, frame)) => {
                    assert!(used > 0 && used <= rest.len());
                    rest = &rest[used..];
                    if let Some(f) = frame {
                        assert!(f.body.len() <= MAX_BODY as usize);
                        assert!(f.data.len() <= MAX_DATA as usize);
                        if let Some(op) = f.op() {
                            let _ = AnyRequest::decode(op, &f.body);
                        }
                    }
                }
                Err(_) => {
                    // Errors are sticky: the daemon drops the session.
                    assert_eq!(dec.feed(b"x").unwrap_err(), FrameError::Poisoned);
                    return;
                }
            }
        }
    }
});
