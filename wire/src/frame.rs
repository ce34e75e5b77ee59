// SPDX-License-Identifier: GPL-3.0-or-later
//! Framing: a fixed 24-byte little-endian header, a bincode body and raw bulk data.
//!
//! ```text
//! offset size field
//!      0    4 body_len  u32  bytes of bincode body following the header (<= MAX_BODY)
//!      4    4 data_len  u32  bytes of raw bulk data following the body (<= MAX_DATA)
//!      8    8 id        u64  request id chosen by the client, echoed in the reply (0 in pushes)
//!     16    2 op        u16  operation code (see `Op`), echoed in the reply, 0 in pushes
//!     18    2 flags     u16  FLAG_REPLY | FLAG_PUSH; any other bit is an error
//!     20    4 aux       i32  request: credential id (0 = none); reply: 0 or a positive errno
//! ```
//!
//! [`FrameDecoder`] is a push parser: feed it whatever bytes arrived (from a blocking read,
//! a tokio read, a fuzzer) and it hands back complete [`Frame`]s. It never allocates more
//! than a frame's checked lengths, and grows the body/data buffers only as bytes arrive.
//! [`EncodedFrame`] holds a header and body and *borrows or owns* the bulk data, and
//! exposes three `IoSlice`s for one `writev`.

use std::io::{self, IoSlice, Write};

use crate::ops::Op;

/// Size of the fixed frame header.
pub const HEADER_LEN: usize = 24;
/// Largest bincode body a frame may carry (1 MiB).
pub const MAX_BODY: u32 = 1 << 20;
/// Largest bulk data a frame may carry (64 MiB).
pub const MAX_DATA: u32 = 64 << 20;
/// Set in replies (daemon -> client, answering request `id`).
pub const FLAG_REPLY: u16 = 1 << 0;
/// Set in unsolicited daemon -> client messages ([`crate::Push`]); id and op are 0.
pub const FLAG_PUSH: u16 = 1 << 1;
/// All flag bits this protocol version knows; others are a decode error.
pub const KNOWN_FLAGS: u16 = FLAG_REPLY | FLAG_PUSH;

/// The fixed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    pub body_len: u32,
    pub data_len: u32,
    pub id: u64,
    pub op: u16,
    pub flags: u16,
    pub aux: i32,
}

impl Header {
    /// Serialize to the 24 wire bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&self.body_len.to_le_bytes());
        b[4..8].copy_from_slice(&self.data_len.to_le_bytes());
        b[8..16].copy_from_slice(&self.id.to_le_bytes());
        b[16..18].copy_from_slice(&self.op.to_le_bytes());
        b[18..20].copy_from_slice(&self.flags.to_le_bytes());
        b[20..24].copy_from_slice(&self.aux.to_le_bytes());
        b
    }

    /// Parse the 24 wire bytes (no validation; see [`Header::validate`]).
    pub fn from_bytes(b: &[u8; HEADER_LEN]) -> Header {
        Header {
            body_len: u32::from_le_bytes(b[0..4].try_into().unwrap()),
            data_len: u32::from_le_bytes(b[4..8].try_into().unwrap()),
            id: u64::from_le_bytes(b[8..16].try_into().unwrap()),
            op: u16::from_le_bytes(b[16..18].try_into().unwrap()),
            flags: u16::from_le_bytes(b[18..20].try_into().unwrap()),
            aux: i32::from_le_bytes(b[20..24].try_into().unwrap()),
        }
    }

    /// Check limits, flags and op code.
    pub fn validate(&self) -> Result<(), FrameError> {
        if self.flags & !KNOWN_FLAGS != 0 {
            return Err(FrameError::UnknownFlags(self.flags));
        }
        if self.flags & FLAG_REPLY != 0 && self.flags & FLAG_PUSH != 0 {
            return Err(FrameError::UnknownFlags(self.flags));
        }
        if self.body_len > MAX_BODY {
            return Err(FrameError::BodyTooLarge(self.body_len));
        }
        if self.data_len > MAX_DATA {
            return Err(FrameError::DataTooLarge(self.data_len));
        }
        if self.is_push() {
            if self.op != 0 || self.id != 0 {
                return Err(FrameError::BadPush);
            }
        } else if Op::try_from(self.op).is_err() {
            return Err(FrameError::UnknownOp(self.op));
        }
        Ok(())
    }

    pub fn is_reply(&self) -> bool {
        self.flags & FLAG_REPLY != 0
    }

    pub fn is_push(&self) -> bool {
        self.flags & FLAG_PUSH != 0
    }
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub header: Header,
    pub body: Vec<u8>,
    /// The bulk data (empty when it went to a [`DataSink`]).
    pub data: Vec<u8>,
    /// True when the `header.data_len` bytes of bulk data were written into the
    /// [`DataSink`] chosen for this frame instead of `data`.
    pub sunk: bool,
}

impl Frame {
    /// The op code, known to be valid for a request or reply frame
    /// (the decoder checked it). `None` for pushes.
    pub fn op(&self) -> Option<Op> {
        if self.header.is_push() {
            None
        } else {
            Op::try_from(self.header.op).ok()
        }
    }
}

/// Why a byte stream or a frame is not acceptable. Any of these ends the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// `body_len` above [`MAX_BODY`].
    BodyTooLarge(u32),
    /// `data_len` above [`MAX_DATA`].
    DataTooLarge(u32),
    /// An op code this protocol version does not know.
    UnknownOp(u16),
    /// Flag bits outside [`KNOWN_FLAGS`], or REPLY and PUSH together.
    UnknownFlags(u16),
    /// A push frame with a non-zero id or op.
    BadPush,
    /// A body that bincode could not decode as the expected type (or with trailing bytes).
    BadBody(String),
    /// A body or data that cannot be encoded within the limits (sending side).
    TooLarge,
    /// The decoder already failed; it stays failed.
    Poisoned,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::BodyTooLarge(n) => write!(f, "frame body of {n} bytes exceeds {MAX_BODY}"),
            FrameError::DataTooLarge(n) => write!(f, "frame data of {n} bytes exceeds {MAX_DATA}"),
            FrameError::UnknownOp(op) => write!(f, "unknown op code {op}"),
            FrameError::UnknownFlags(fl) => write!(f, "unknown frame flags {fl:#x}"),
            FrameError::BadPush => write!(f, "push frame with non-zero id or op"),
            FrameError::BadBody(e) => write!(f, "undecodable body: {e}"),
            FrameError::TooLarge => write!(f, "message exceeds the frame limits"),
            FrameError::Poisoned => write!(f, "decoder failed earlier"),
        }
    }
}

impl std::error::Error for FrameError {}

impl From<FrameError> for io::Error {
    fn from(e: FrameError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// Streaming frame decoder.
///
/// ```
/// # use ceph_rs_wire::frame::*;
/// let mut dec = FrameDecoder::new();
/// let mut input: &[u8] = &[]; // bytes from the socket
/// while !input.is_empty() {
///     let (used, frame) = dec.feed(input).expect("protocol error: drop the session");
///     input = &input[used..];
///     if let Some(frame) = frame { /* handle */ }
/// }
/// ```
#[derive(Debug, Default)]
pub struct FrameDecoder {
    hdr: [u8; HEADER_LEN],
    hdr_len: usize,
    cur: Option<Partial>,
    poisoned: bool,
}

#[derive(Debug)]
struct Partial {
    header: Header,
    body: Vec<u8>,
    data: Dest,
}

/// A caller-owned buffer that a frame's bulk data is written into instead of a new
/// `Vec` (see [`FrameDecoder::feed_with`]): a reply's data goes straight to where its
/// reader wants it, without an allocation and a copy.
#[derive(Debug, Clone, Copy)]
pub struct DataSink {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: a sink names memory its creator promised (DataSink::new) to keep valid and
// untouched until the decoder is done with it; which thread the decoder runs on does not
// change that promise. (The daemon's decoders never get a sink; this lets them stay Send.)
unsafe impl Send for DataSink {}

impl DataSink {
    /// # Safety
    /// `ptr..ptr + len` must be writable, and stay valid and not otherwise accessed,
    /// until the decoder that gets this sink has finished the frame or has been told to
    /// stop using it ([`FrameDecoder::discard_data`], or the decoder is dropped).
    pub unsafe fn new(ptr: *mut u8, len: usize) -> DataSink {
        DataSink {
            ptr: std::ptr::NonNull::new(ptr).unwrap_or(std::ptr::NonNull::dangling()),
            len: if ptr.is_null() { 0 } else { len },
        }
    }

    /// A sink over a slice; the same contract as [`DataSink::new`] for as long as a
    /// decoder may write into it.
    ///
    /// # Safety
    /// See [`DataSink::new`]: the borrow of `buf` ends here, the decoder's use does not.
    pub unsafe fn from_slice(buf: &mut [u8]) -> DataSink {
        // SAFETY: forwarded to the caller.
        unsafe { DataSink::new(buf.as_mut_ptr(), buf.len()) }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The sink's bytes from `from` on.
    fn tail(&mut self, from: usize) -> &mut [u8] {
        // SAFETY: DataSink::new's contract: the range is writable and ours while the
        // decoder holds the sink; from <= len (callers keep filled <= data_len <= len).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(from), self.len - from) }
    }
}

/// Where the bulk data of the frame being decoded goes.
#[derive(Debug)]
enum Dest {
    Vec(Vec<u8>),
    /// Into a caller's buffer; `usize` bytes of it filled so far.
    Sink(DataSink, usize),
    /// Dropped (the sink's owner gave up on the frame); `usize` bytes passed so far.
    Discard(usize),
}

impl Dest {
    fn filled(&self) -> usize {
        match self {
            Dest::Vec(v) => v.len(),
            Dest::Sink(_, n) | Dest::Discard(n) => *n,
        }
    }

    /// Take up to `want - filled` bytes of `input`; returns how many.
    fn take(&mut self, want: usize, input: &[u8]) -> usize {
        match self {
            Dest::Vec(v) => take_into(v, want, input),
            Dest::Sink(s, filled) => {
                let n = (want - *filled).min(input.len());
                s.tail(*filled)[..n].copy_from_slice(&input[..n]);
                *filled += n;
                n
            }
            Dest::Discard(filled) => {
                let n = (want - *filled).min(input.len());
                *filled += n;
                n
            }
        }
    }
}

/// Largest step by which a partially received body/data buffer grows; a peer that
/// claims 64 MiB and sends nothing costs us nothing.
const GROW_STEP: usize = 1 << 20;

fn take_into(dst: &mut Vec<u8>, want: usize, input: &[u8]) -> usize {
    let missing = want - dst.len();
    let n = missing.min(input.len());
    if dst.capacity() - dst.len() < n {
        // Grow towards the checked target length as bytes arrive: at least doubling
        // (linear total copying), at most to the target, never by more than what has
        // arrived so far plus GROW_STEP (a peer that claims 64 MiB and sends nothing
        // costs nothing).
        let extra = n.max(dst.len().max(GROW_STEP)).min(missing);
        dst.reserve_exact(extra);
    }
    dst.extend_from_slice(&input[..n]);
    n
}

impl FrameDecoder {
    pub fn new() -> FrameDecoder {
        FrameDecoder::default()
    }

    /// Consume bytes from `input` until one frame is complete or `input` is exhausted.
    /// Returns how many bytes were consumed and the completed frame, if any. Call again
    /// with the rest of the input. After an error the decoder is poisoned.
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Option<Frame>), FrameError> {
        self.feed_with(input, |_| None)
    }

    /// [`FrameDecoder::feed`], asking `sink_for` for each new frame's header whether its
    /// bulk data should go into a caller's buffer. A sink shorter than the frame's data
    /// is not used (the data then goes to `Frame::data` as usual).
    pub fn feed_with(
        &mut self,
        input: &[u8],
        sink_for: impl FnOnce(&Header) -> Option<DataSink>,
    ) -> Result<(usize, Option<Frame>), FrameError> {
        if self.poisoned {
            return Err(FrameError::Poisoned);
        }
        let mut used = 0;
        if self.cur.is_none() {
            let n = (HEADER_LEN - self.hdr_len).min(input.len());
            self.hdr[self.hdr_len..self.hdr_len + n].copy_from_slice(&input[..n]);
            self.hdr_len += n;
            used += n;
            if self.hdr_len < HEADER_LEN {
                return Ok((used, None));
            }
            self.hdr_len = 0;
            let header = Header::from_bytes(&self.hdr);
            if let Err(e) = header.validate() {
                self.poisoned = true;
                return Err(e);
            }
            let data = match sink_for(&header) {
                Some(s) if header.data_len > 0 && s.len() >= header.data_len as usize => {
                    Dest::Sink(s, 0)
                }
                _ => Dest::Vec(Vec::new()),
            };
            self.cur = Some(Partial {
                header,
                body: Vec::new(),
                data,
            });
        }
        let p = self.cur.as_mut().expect("partial frame");
        let body_len = p.header.body_len as usize;
        let data_len = p.header.data_len as usize;
        if p.body.len() < body_len {
            used += take_into(&mut p.body, body_len, &input[used..]);
        }
        if p.body.len() == body_len && p.data.filled() < data_len {
            used += p.data.take(data_len, &input[used..]);
        }
        if p.body.len() == body_len && p.data.filled() == data_len {
            let p = self.cur.take().expect("partial frame");
            let (data, sunk) = match p.data {
                Dest::Vec(v) => (v, false),
                Dest::Sink(..) => (Vec::new(), true),
                Dest::Discard(_) => (Vec::new(), false),
            };
            return Ok((
                used,
                Some(Frame {
                    header: p.header,
                    body: p.body,
                    data,
                    sunk,
                }),
            ));
        }
        Ok((used, None))
    }

    /// Stop writing the current frame's bulk data into its sink (its owner is giving
    /// the buffer back): the rest of that data is read and dropped, and the frame comes
    /// out with empty data and `sunk == false`. Does nothing when no frame is using a
    /// sink. Returns the id of the frame whose sink was dropped.
    pub fn discard_data(&mut self) -> Option<u64> {
        let p = self.cur.as_mut()?;
        if let Dest::Sink(_, filled) = p.data {
            p.data = Dest::Discard(filled);
            return Some(p.header.id);
        }
        None
    }

    /// The id of the frame whose data is being written into a sink, if any.
    pub fn sinking(&self) -> Option<u64> {
        match &self.cur {
            Some(Partial {
                header,
                data: Dest::Sink(..),
                ..
            }) => Some(header.id),
            _ => None,
        }
    }

    /// Feed a whole buffer, collecting every completed frame.
    pub fn feed_all(&mut self, mut input: &[u8]) -> Result<Vec<Frame>, FrameError> {
        let mut out = Vec::new();
        while !input.is_empty() {
            let (used, frame) = self.feed(input)?;
            input = &input[used..];
            if let Some(f) = frame {
                out.push(f);
            }
        }
        Ok(out)
    }

    /// Capacity of the partial frame's data buffer (tests).
    #[cfg(test)]
    pub(crate) fn partial_data_capacity(&self) -> Option<usize> {
        self.cur.as_ref().map(|p| match &p.data {
            Dest::Vec(v) => v.capacity(),
            _ => 0,
        })
    }

    /// Bytes of bulk data the current frame still needs once its body is complete (0
    /// otherwise, and while the data is being discarded): a reader may then hand them
    /// to [`FrameDecoder::read_data`].
    pub fn data_wanted(&self) -> usize {
        match &self.cur {
            Some(Partial {
                data: Dest::Discard(_),
                ..
            }) => 0,
            Some(p) if p.body.len() == p.header.body_len as usize => {
                p.header.data_len as usize - p.data.filled()
            }
            _ => 0,
        }
    }

    /// Read bulk data straight into the frame's buffer or sink (no copy through a read
    /// buffer): `read` gets the unfilled part and returns how much it filled. Call
    /// [`FrameDecoder::feed`] (with any input, even empty) afterwards to collect the frame.
    pub fn read_data(
        &mut self,
        read: impl FnOnce(&mut [u8]) -> std::io::Result<usize>,
    ) -> std::io::Result<usize> {
        let want = self.data_wanted();
        let Some(p) = self.cur.as_mut().filter(|_| want > 0) else {
            return Ok(0);
        };
        match &mut p.data {
            Dest::Vec(v) => {
                let filled = v.len();
                // Grow at most by what has arrived so far (as feed does): a peer that
                // announces 64 MiB and sends nothing costs nothing.
                let chunk = want.min(filled.max(GROW_STEP));
                v.resize(filled + chunk, 0);
                let r = read(&mut v[filled..]);
                let n = match &r {
                    Ok(n) => (*n).min(chunk),
                    Err(_) => 0,
                };
                v.truncate(filled + n);
                r.map(|_| n)
            }
            Dest::Sink(s, filled) => {
                let r = read(&mut s.tail(*filled)[..want]);
                let n = match &r {
                    Ok(n) => (*n).min(want),
                    Err(_) => 0,
                };
                *filled += n;
                r.map(|_| n)
            }
            Dest::Discard(_) => Ok(0),
        }
    }

    /// True when no partial frame is buffered (a clean place for the stream to end).
    pub fn is_idle(&self) -> bool {
        self.hdr_len == 0 && self.cur.is_none()
    }
}

/// An encoded frame: header and body bytes, plus bulk data that is borrowed or owned
/// (`D = &[u8]` or `Vec<u8>`) and never copied.
#[derive(Debug)]
pub struct EncodedFrame<D: AsRef<[u8]>> {
    pub header: [u8; HEADER_LEN],
    pub body: Vec<u8>,
    pub data: D,
}

impl<D: AsRef<[u8]>> EncodedFrame<D> {
    /// The three slices to hand to `writev`.
    pub fn io_slices(&self) -> [IoSlice<'_>; 3] {
        [
            IoSlice::new(&self.header),
            IoSlice::new(&self.body),
            IoSlice::new(self.data.as_ref()),
        ]
    }

    /// Total bytes on the wire.
    pub fn len(&self) -> usize {
        HEADER_LEN + self.body.len() + self.data.as_ref().len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Write the whole frame with `write_vectored`, handling short writes.
    pub fn write_to<W: Write>(&self, w: &mut W) -> io::Result<()> {
        let mut sent = 0;
        if self.write_from(w, &mut sent)? {
            Ok(())
        } else {
            Err(io::ErrorKind::WouldBlock.into())
        }
    }

    /// Write the frame from byte `*sent` on, as far as `w` takes it: Ok(true) when all of
    /// it is written, Ok(false) when a non-blocking `w` would block (`*sent` says how far
    /// it got, to resume from there).
    pub fn write_from<W: Write>(&self, mut w: W, sent: &mut usize) -> io::Result<bool> {
        while *sent < self.len() {
            let mut slices = self.io_slices();
            let mut bufs: &mut [IoSlice<'_>] = &mut slices;
            IoSlice::advance_slices(&mut bufs, *sent);
            match w.write_vectored(bufs) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => *sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

/// Build a frame from a header (whose lengths are filled in here), an encoded body and
/// the bulk data. Fails with [`FrameError::TooLarge`] when a limit is exceeded.
pub fn encode_frame<D: AsRef<[u8]>>(
    mut header: Header,
    body: Vec<u8>,
    data: D,
) -> Result<EncodedFrame<D>, FrameError> {
    let dlen = data.as_ref().len();
    if body.len() > MAX_BODY as usize || dlen > MAX_DATA as usize {
        return Err(FrameError::TooLarge);
    }
    header.body_len = body.len() as u32;
    header.data_len = dlen as u32;
    Ok(EncodedFrame {
        header: header.to_bytes(),
        body,
        data,
    })
}

/// bincode configuration used for every body.
pub fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encode a body with bincode.
pub fn encode_body<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, FrameError> {
    let v = bincode::serde::encode_to_vec(value, bincode_config())
        .map_err(|e| FrameError::BadBody(e.to_string()))?;
    if v.len() > MAX_BODY as usize {
        return Err(FrameError::TooLarge);
    }
    Ok(v)
}

/// Decode a body with bincode, with the body limit as the decode limit and no trailing
/// bytes allowed.
pub fn decode_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    let cfg = bincode_config().with_limit::<{ MAX_BODY as usize }>();
    let (v, used) = bincode::serde::decode_from_slice(body, cfg)
        .map_err(|e| FrameError::BadBody(e.to_string()))?;
    if used != body.len() {
        return Err(FrameError::BadBody(format!(
            "{} trailing bytes",
            body.len() - used
        )));
    }
    Ok(v)
}
