// SPDX-License-Identifier: GPL-3.0-or-later
//! Building request, reply and push frames from typed messages, and reading replies.

use serde::Serialize;

use crate::frame::{
    decode_body, encode_body, encode_frame, EncodedFrame, Frame, FrameError, Header, FLAG_PUSH,
    FLAG_REPLY,
};
use crate::ops::{Op, Push, Request};
use crate::types::Errno;

/// A request frame: `cred` goes into `aux` (0 = none).
pub fn encode_request<'d, R: Request>(
    id: u64,
    cred: u32,
    req: &R,
    data: &'d [u8],
) -> Result<EncodedFrame<&'d [u8]>, FrameError> {
    let header = Header {
        id,
        op: R::OP as u16,
        flags: 0,
        aux: cred as i32,
        ..Header::default()
    };
    encode_frame(header, encode_body(req)?, data)
}

/// A success reply for request `id` of `op`.
pub fn encode_reply<T: Serialize, D: AsRef<[u8]>>(
    id: u64,
    op: Op,
    reply: &T,
    data: D,
) -> Result<EncodedFrame<D>, FrameError> {
    let header = Header {
        id,
        op: op as u16,
        flags: FLAG_REPLY,
        aux: 0,
        ..Header::default()
    };
    encode_frame(header, encode_body(reply)?, data)
}

/// An error reply: positive errno in `aux`, an optional message as the body.
pub fn encode_error(id: u64, op: Op, errno: Errno, message: Option<&str>) -> EncodedFrame<Vec<u8>> {
    let header = Header {
        id,
        op: op as u16,
        flags: FLAG_REPLY,
        aux: if errno.0 > 0 { errno.0 } else { Errno::EIO.0 },
        ..Header::default()
    };
    let body = match message {
        // Messages are short; clip anyway so the frame always fits.
        Some(m) => encode_body(&clip(m, 4096).to_string()).unwrap_or_default(),
        None => Vec::new(),
    };
    encode_frame(header, body, Vec::new()).expect("small error frame")
}

fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A push frame.
pub fn encode_push(push: &Push) -> Result<EncodedFrame<Vec<u8>>, FrameError> {
    let header = Header {
        flags: FLAG_PUSH,
        ..Header::default()
    };
    encode_frame(header, encode_body(push)?, Vec::new())
}

/// A decoded reply frame, not yet typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub id: u64,
    pub op: Op,
    /// `Ok(body)` or the errno with the daemon's message (possibly empty).
    pub result: Result<Vec<u8>, (Errno, String)>,
    pub data: Vec<u8>,
    /// `Some(n)`: the data (n bytes) went into the request's [`crate::DataSink`], not
    /// into `data`.
    pub sunk: Option<usize>,
}

impl Reply {
    /// Interpret a frame known to have FLAG_REPLY.
    pub fn from_frame(frame: Frame) -> Result<Reply, FrameError> {
        let op = Op::try_from(frame.header.op)?;
        let aux = frame.header.aux;
        let result = if aux == 0 {
            Ok(frame.body)
        } else if aux > 0 {
            let msg = if frame.body.is_empty() {
                String::new()
            } else {
                decode_body::<String>(&frame.body)?
            };
            Err((Errno(aux), msg))
        } else {
            return Err(FrameError::BadBody(format!(
                "negative errno {aux} in reply"
            )));
        };
        Ok(Reply {
            id: frame.header.id,
            op,
            result,
            data: frame.data,
            sunk: frame.sunk.then_some(frame.header.data_len as usize),
        })
    }

    /// Decode as the reply of request type `R`. A reply of another op, or an
    /// undecodable body, is EPROTO.
    pub fn decode<R: Request>(self) -> Result<(R::Reply, Vec<u8>), Errno> {
        if self.op != R::OP {
            return Err(Errno::EPROTO);
        }
        match self.result {
            Ok(body) => {
                let rep = decode_body::<R::Reply>(&body).map_err(|_| Errno::EPROTO)?;
                Ok((rep, self.data))
            }
            Err((e, _)) => Err(e),
        }
    }

    /// The errno of a failed reply, if it failed.
    pub fn errno(&self) -> Option<Errno> {
        self.result.as_ref().err().map(|(e, _)| *e)
    }

    /// The daemon's error message ("" on success or when none was sent).
    pub fn message(&self) -> &str {
        match &self.result {
            Err((_, m)) => m,
            Ok(_) => "",
        }
    }
}
