//! Where a chunked body ends (RFC 9112 §7.1), found by walking its chunk sizes, so that a
//! message that ends inside a transfer (pipelined responses written together) is split at the
//! right byte. Bytes the capture did not copy are skipped while they are chunk data; if a size
//! line falls among them the walk is lost, and the body is taken to end at the transfer whose
//! last bytes are the last chunk (`0\r\n\r\n`).

/// Longest chunk-size line (with extensions) or trailer line followed: beyond it the walk is lost.
const MAX_LINE: u32 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// Before a chunk-size line.
    #[default]
    Size,
    /// In a chunk-size line: the size so far, whether in an extension, its length so far.
    SizeDigits {
        n: u64,
        ext: bool,
        line: u32,
    },
    SizeLf {
        n: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// A trailer line (or the blank line that ends the body), `line` bytes in.
    Trailer {
        line: u32,
    },
    TrailerLf {
        line: u32,
    },
    /// Uncaptured or unexpected bytes where a size line should be: only the last bytes of
    /// each transfer tell where the body ends.
    Lost,
}

#[derive(Debug, Clone, Default)]
pub struct Chunked {
    state: State,
    /// The last bytes seen, for the end check once lost.
    window: Vec<u8>,
}

/// What is known of one transfer's bytes past a point: the first of them as captured, how many
/// there are in all, and the transfer's last bytes when the capture stopped short of them.
#[derive(Debug, Clone, Copy)]
pub struct Span<'a> {
    pub captured: &'a [u8],
    pub len: u64,
    pub tail: &'a [u8],
}

impl Span<'_> {
    /// Whether every byte is in `captured`.
    pub fn whole(&self) -> bool {
        self.captured.len() as u64 >= self.len
    }
}

impl Chunked {
    /// Whether the walk lost its place (the end is then found by the last bytes only).
    pub fn lost(&self) -> bool {
        self.state == State::Lost
    }

    /// Feeds the next bytes of the body; returns how many of them belong to it when it ends
    /// among them.
    pub fn feed(&mut self, span: Span<'_>) -> Option<u64> {
        if self.state != State::Lost {
            let captured = &span.captured[..span.captured.len().min(span.len as usize)];
            if let Some(used) = self.walk(captured) {
                return Some(used);
            }
            let rest = span.len - captured.len() as u64;
            match self.state {
                _ if rest == 0 => {}
                State::Data(left) if left > rest => self.state = State::Data(left - rest),
                State::Data(left) if left == rest => self.state = State::DataCr,
                _ => self.state = State::Lost,
            }
        }
        self.keep_window(span);
        (self.state == State::Lost && self.window.ends_with(b"0\r\n\r\n")).then_some(span.len)
    }

    fn walk(&mut self, bytes: &[u8]) -> Option<u64> {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            self.state = match self.state {
                State::Size => match hex(b) {
                    Some(d) => State::SizeDigits { n: u64::from(d), ext: false, line: 1 },
                    None => State::Lost,
                },
                State::SizeDigits { line, .. } if line >= MAX_LINE => State::Lost,
                State::SizeDigits { n, ext, line } => match (b, hex(b)) {
                    (b'\r', _) => State::SizeLf { n },
                    (_, Some(d)) if !ext => match n.checked_mul(16) {
                        Some(m) => State::SizeDigits { n: m + u64::from(d), ext, line: line + 1 },
                        None => State::Lost,
                    },
                    (b';' | b' ' | b'\t', _) => State::SizeDigits { n, ext: true, line: line + 1 },
                    _ if ext => State::SizeDigits { n, ext, line: line + 1 },
                    _ => State::Lost,
                },
                State::SizeLf { n } if b == b'\n' => {
                    if n == 0 {
                        State::Trailer { line: 0 }
                    } else {
                        State::Data(n)
                    }
                }
                State::Data(left) => {
                    let take = (left.min((bytes.len() - i) as u64)) as usize;
                    i += take;
                    self.state = if left == take as u64 { State::DataCr } else { State::Data(left - take as u64) };
                    continue;
                }
                State::DataCr if b == b'\r' => State::DataLf,
                State::DataLf if b == b'\n' => State::Size,
                State::Trailer { line } if b == b'\r' => State::TrailerLf { line },
                State::Trailer { line } if line < MAX_LINE => State::Trailer { line: line + 1 },
                State::TrailerLf { line } if b == b'\n' => {
                    if line == 0 {
                        self.state = State::Size;
                        self.window.clear();
                        return Some(i as u64 + 1);
                    }
                    State::Trailer { line: 0 }
                }
                _ => State::Lost,
            };
            if self.state == State::Lost {
                return None;
            }
            i += 1;
        }
        None
    }

    fn keep_window(&mut self, span: Span<'_>) {
        const KEEP: usize = 8;
        if span.whole() {
            self.window.extend_from_slice(&span.captured[..span.len as usize]);
        } else if span.tail.len() >= KEEP.min(span.len as usize) && !span.tail.is_empty() {
            self.window.clear();
            self.window.extend_from_slice(span.tail);
        } else {
            self.window.clear();
        }
        if self.window.len() > KEEP {
            self.window.drain(..self.window.len() - KEEP);
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(b: &[u8]) -> Span<'_> {
        Span { captured: b, len: b.len() as u64, tail: &[] }
    }

    #[test]
    fn ends_at_the_last_chunk_and_says_where() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n";
        let mut c = Chunked::default();
        assert_eq!(c.feed(whole(body)), Some(body.len() as u64 - 17));
    }

    #[test]
    fn any_split_gives_the_same_end() {
        let body = b"a\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n";
        for cut in 0..body.len() {
            let mut c = Chunked::default();
            let first = c.feed(whole(&body[..cut]));
            assert_eq!(first, None, "cut {cut}");
            assert_eq!(c.feed(whole(&body[cut..])), Some((body.len() - cut) as u64), "cut {cut}");
        }
    }

    #[test]
    fn a_terminator_inside_chunk_data_is_data() {
        let body = b"7\r\nab0\r\n\r\n\r\n0\r\n\r\n";
        let mut c = Chunked::default();
        assert_eq!(c.feed(whole(&body[..12])), None);
        assert_eq!(c.feed(whole(&body[12..])), Some((body.len() - 12) as u64));
    }

    #[test]
    fn uncaptured_chunk_data_is_skipped() {
        // 3000 bytes of data in one chunk, of which 2048 were copied, then the last chunk.
        let mut body = b"bb8\r\n".to_vec();
        body.extend(std::iter::repeat_n(b'x', 3000));
        body.extend_from_slice(b"\r\n0\r\n\r\n");
        let mut c = Chunked::default();
        let span = Span { captured: &body[..2048], len: 3005, tail: &body[3005 - 8..3005] };
        assert_eq!(c.feed(span), None);
        assert!(!c.lost());
        assert_eq!(c.feed(whole(&body[3005..])), Some(7));
    }

    #[test]
    fn lost_walk_ends_by_the_last_bytes() {
        // Many small chunks past the copied part: sizes unseen.
        let mut body = Vec::new();
        for _ in 0..400 {
            body.extend_from_slice(b"4\r\nabcd\r\n");
        }
        body.extend_from_slice(b"0\r\n\r\n");
        let mut c = Chunked::default();
        let n = body.len();
        let span = Span { captured: &body[..2048], len: n as u64, tail: &body[n - 8..] };
        assert_eq!(c.feed(span), Some(n as u64));
        let mut c = Chunked::default();
        let span = Span { captured: &body[..2048], len: (n - 5) as u64, tail: &body[n - 13..n - 5] };
        assert_eq!(c.feed(span), None);
        assert!(c.lost());
        assert_eq!(c.feed(whole(b"0\r\n\r\n")), Some(5));
    }

    #[test]
    fn garbage_is_lost_not_a_panic() {
        let mut c = Chunked::default();
        assert_eq!(c.feed(whole(b"zz\r\n")), None);
        assert!(c.lost());
        let mut c = Chunked::default();
        assert_eq!(c.feed(whole(b"ffffffffffffffffffff\r\n")), None);
        assert!(c.lost());
    }
}
