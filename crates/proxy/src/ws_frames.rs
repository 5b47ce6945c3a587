//! Where WebSocket frames begin and end in a joined connection's bytes
//! (RFC 6455 §5.2), so that strait can end a WebSocket it carries with a
//! close frame (1001, going away) when it must close it itself — at the
//! drain deadline — instead of cutting it in the middle of a frame.
//! Only headers are read; payloads are counted, never looked at.

/// A position in one direction's stream of frames.
#[derive(Debug, Default)]
pub struct Frames {
    /// Bytes of the current frame's header seen so far (at most 14).
    head: Vec<u8>,
    /// Payload bytes of the current frame still to come.
    left: u64,
}

/// A frame header's length, once its first bytes are known.
fn header_len(head: &[u8]) -> Option<usize> {
    let second = *head.get(1)?;
    let extended = match second & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    Some(2 + extended + mask)
}

/// The payload length a whole header gives.
fn payload_len(head: &[u8]) -> u64 {
    match head[1] & 0x7f {
        126 => u64::from(u16::from_be_bytes([head[2], head[3]])),
        127 => {
            let mut n = [0u8; 8];
            n.copy_from_slice(&head[2..10]);
            u64::from_be_bytes(n)
        }
        n => u64::from(n),
    }
}

impl Frames {
    /// Follows `bytes`, the next ones written in this direction.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.left > 0 {
                let take = usize::try_from(self.left).map_or(bytes.len(), |l| l.min(bytes.len()));
                self.left -= take as u64;
                bytes = &bytes[take..];
                continue;
            }
            self.head.push(bytes[0]);
            bytes = &bytes[1..];
            if header_len(&self.head) == Some(self.head.len()) {
                self.left = payload_len(&self.head);
                self.head.clear();
            }
        }
    }

    /// Between two frames: a frame written now would stand on its own.
    pub fn at_boundary(&self) -> bool {
        self.left == 0 && self.head.is_empty()
    }
}

/// A close frame with status 1001 (going away), as a server sends it.
pub const CLOSE_TO_CLIENT: [u8; 4] = [0x88, 0x02, 0x03, 0xe9];

/// The same close frame as a client must send it: masked (§5.3).
pub fn close_to_server() -> [u8; 8] {
    let m: [u8; 4] = std::array::from_fn(|_| fastrand::u8(..));
    [0x88, 0x82, m[0], m[1], m[2], m[3], 0x03 ^ m[0], 0xe9 ^ m[1]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_frames_of_every_length_form_in_any_split() {
        let mut stream = Vec::new();
        // A short text frame, masked.
        stream.extend([0x81, 0x85, 1, 2, 3, 4]);
        stream.extend(b"hello");
        // 16-bit length, unmasked.
        stream.extend([0x82, 126, 0x01, 0x00]);
        stream.extend(vec![7u8; 256]);
        // 64-bit length.
        stream.extend([0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        stream.extend(vec![9u8; 65536]);
        for split in [1, 3, 7, 100, 5000] {
            let mut frames = Frames::default();
            for piece in stream.chunks(split) {
                frames.feed(piece);
            }
            assert!(frames.at_boundary(), "split {split}");
        }
        let mut frames = Frames::default();
        frames.feed(&stream[..stream.len() - 1]);
        assert!(!frames.at_boundary());
        let mut frames = Frames::default();
        frames.feed(&[0x81]);
        assert!(!frames.at_boundary(), "half a header");
    }

    #[test]
    fn close_frames_are_well_formed() {
        let mut f = Frames::default();
        f.feed(&CLOSE_TO_CLIENT);
        f.feed(&close_to_server());
        assert!(f.at_boundary());
        let masked = close_to_server();
        let status = [masked[6] ^ masked[2], masked[7] ^ masked[3]];
        assert_eq!(u16::from_be_bytes(status), 1001);
    }
}
