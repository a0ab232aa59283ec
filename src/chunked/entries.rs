//! Where each entry of the tar stream begins and ends, found as the stream goes by, so that
//! chunks can be cut at file boundaries: an unchanged file then yields the same chunks
//! whatever its neighbours did, and a changed one dirties only its own. An entry's span is its
//! prefix headers (pax `x`, GNU `L`/`K`), its own header and its data with padding. The stream
//! is kura's own, but nothing here trusts it: a header that fails its checksum, or any other
//! surprise, ends the walk, and the cutter goes on without entries (plain FastCDC), which is
//! only less dedup, never a different stream.

const BLOCK: u64 = 512;

/// What the walk found next.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// The next entry spans `start..end` of the stream; `mark` is a hash of its name (the
    /// same name gives the same mark, whatever the file holds).
    Entry { start: u64, end: u64, mark: u64 },
    /// Its headers are not all in the buffer yet.
    NeedMore,
    /// No entries from here on (the archive's end, or a stream that is not tar).
    Plain,
}

#[derive(Default)]
pub(super) struct Walk {
    /// Stream offset of the next entry's first header.
    next: u64,
    /// The entry at `next`, once its headers were read: a large file is cut over several
    /// buffers, and its headers leave the buffer before it ends.
    found: Option<(u64, u64)>,
    ended: bool,
}

impl Walk {
    /// The entry at the walk's position, read from `buf` (which holds the stream from offset
    /// `at`). The walk stays there until [`Walk::pass`].
    pub(super) fn peek(&mut self, buf: &[u8], at: u64) -> Step {
        if let Some((end, mark)) = self.found {
            return Step::Entry {
                start: self.next,
                end,
                mark,
            };
        }
        if self.ended || self.next < at {
            return Step::Plain;
        }
        let mut h = self.next;
        let mut size_override = None;
        let mut long_name: Option<Vec<u8>> = None;
        loop {
            let i = (h - at) as usize;
            let Some(header) = buf.get(i..i + BLOCK as usize) else {
                return Step::NeedMore;
            };
            if header.iter().all(|&b| b == 0) || !checksum_ok(header) {
                return Step::Plain;
            }
            let Some(size) = octal_or_binary(&header[124..136]) else {
                return Step::Plain;
            };
            let data = h + BLOCK;
            // kura writes one prefix header an entry: a chain of them is not its stream.
            if h - self.next > 2 << 20 {
                return Step::Plain;
            }
            match header[156] {
                // Prefix headers: their data describes the entry that follows.
                b'x' | b'L' | b'K' => {
                    let Some(body) = usize::try_from(size)
                        .ok()
                        .filter(|&n| n <= 1 << 20)
                        .map(|n| (data - at) as usize..(data - at) as usize + n)
                    else {
                        return Step::Plain;
                    };
                    let Some(body) = buf.get(body) else {
                        return Step::NeedMore;
                    };
                    if header[156] == b'x' {
                        size_override = pax_record(body, "size")
                            .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
                            .or(size_override);
                        long_name = pax_record(body, "path").map(<[u8]>::to_vec).or(long_name);
                    }
                    h = data + padded(size);
                }
                kind => {
                    let size = match kind {
                        // Links and directories carry no data, whatever their size field says.
                        b'1' | b'2' | b'5' => 0,
                        _ => size_override.unwrap_or(size),
                    };
                    let Some(end) = data.checked_add(padded(size)) else {
                        return Step::Plain;
                    };
                    let mark = mark(header, long_name.as_deref());
                    self.found = Some((end, mark));
                    return Step::Entry {
                        start: self.next,
                        end,
                        mark,
                    };
                }
            }
        }
    }

    /// Where the next entry begins (after the last: where the entries end).
    pub(super) fn next(&self) -> u64 {
        self.next
    }

    /// Move past `len` bytes of entries taken whole, which begin at `at`: whether the walk
    /// was there, between entries.
    pub(super) fn skip(&mut self, at: u64, len: u64) -> bool {
        if self.ended || self.found.is_some() || self.next != at {
            return false;
        }
        self.next += len;
        true
    }

    /// Move past the entry [`Walk::peek`] gave (ending at `end`), or past the end of the
    /// entries.
    pub(super) fn pass(&mut self, step: &Step) {
        self.found = None;
        match step {
            Step::Entry { end, .. } => self.next = *end,
            Step::Plain => self.ended = true,
            Step::NeedMore => {}
        }
    }
}

fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK).saturating_mul(BLOCK)
}

/// The header's checksum: the sum of its bytes with the checksum field as spaces.
fn checksum_ok(h: &[u8]) -> bool {
    let sum: u64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                b as u64
            }
        })
        .sum();
    octal_or_binary(&h[148..156]) == Some(sum)
}

/// A numeric field: octal digits (space or NUL ended), or GNU's base-256 for large values.
fn octal_or_binary(f: &[u8]) -> Option<u64> {
    if f[0] & 0x80 != 0 {
        if f.len() <= 8 || f[0] != 0x80 || f[1..f.len() - 8].iter().any(|&b| b != 0) {
            return None;
        }
        return Some(u64::from_be_bytes(f[f.len() - 8..].try_into().ok()?));
    }
    let digits: Vec<u8> = f
        .iter()
        .copied()
        .skip_while(|&b| b == b' ')
        .take_while(|&b| b != 0 && b != b' ')
        .collect();
    if digits.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(&digits).ok()?, 8).ok()
}

/// The value of record `key` in a pax header's data (`LEN key=value\n` records), if it has
/// one (the last, as readers take it).
fn pax_record<'a>(body: &'a [u8], key: &str) -> Option<&'a [u8]> {
    let mut rest = body;
    let mut found = None;
    while !rest.is_empty() {
        let space = rest.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
        let record = rest.get(space + 1..len)?.strip_suffix(b"\n")?;
        if let Some(v) = record
            .strip_prefix(key.as_bytes())
            .and_then(|r| r.strip_prefix(b"="))
        {
            found = Some(v);
        }
        rest = &rest[len..];
    }
    found
}

/// A hash of the entry's name (the pax `path` where it has one: the header's field holds a
/// truncated copy, which deep trees share), not its times or sizes.
fn mark(h: &[u8], long_name: Option<&[u8]>) -> u64 {
    let mut hasher = blake3::Hasher::new();
    match long_name {
        Some(name) => hasher.update(name),
        None => hasher.update(&h[0..100]).update(&h[345..500]),
    };
    u64::from_le_bytes(
        hasher.finalize().as_bytes()[..8]
            .try_into()
            .expect("8 bytes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream the way kura writes one: pax records, a long name, a directory, a link.
    fn stream() -> (Vec<u8>, Vec<(String, u64)>) {
        let mut b = tar::Builder::new(Vec::new());
        let mut spans = Vec::new();
        let mut add = |b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8], kind| {
            let start = b.get_ref().len() as u64;
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            if name.len() > 90 {
                b.append_pax_extensions([("path", name.as_bytes()), ("mtime", &b"1.5"[..])])
                    .unwrap();
                h.set_path("truncated").unwrap();
            } else {
                h.set_path(name).unwrap();
            }
            h.set_cksum();
            b.append(&h, data).unwrap();
            spans.push((name.to_string(), b.get_ref().len() as u64 - start));
        };
        add(&mut b, "d/", b"", tar::EntryType::Directory);
        add(&mut b, "d/a", b"hello", tar::EntryType::Regular);
        add(
            &mut b,
            &format!("d/{}", "n".repeat(150)),
            &[7; 3000],
            tar::EntryType::Regular,
        );
        add(&mut b, "d/empty", b"", tar::EntryType::Regular);
        add(&mut b, "d/l", b"", tar::EntryType::Symlink);
        (b.into_inner().unwrap(), spans)
    }

    fn walk_all(buf: &[u8], piece: usize) -> Vec<u64> {
        let mut w = Walk::default();
        let mut lens = Vec::new();
        let mut have = piece.min(buf.len());
        loop {
            match w.peek(&buf[..have], 0) {
                Step::Entry { start, end, .. } => {
                    lens.push(end - start);
                    w.pass(&Step::Entry {
                        start,
                        end,
                        mark: 0,
                    });
                }
                Step::NeedMore if have < buf.len() => have = (have + piece).min(buf.len()),
                _ => return lens,
            }
        }
    }

    #[test]
    fn entries_span_their_prefix_headers_and_padded_data_however_the_stream_arrives() {
        let (buf, spans) = stream();
        let want: Vec<u64> = spans.iter().map(|s| s.1).collect();
        for piece in [1, 100, 512, 4096, buf.len()] {
            assert_eq!(walk_all(&buf, piece), want, "pieces of {piece}");
        }
    }

    /// A large file is cut over several buffers: once its headers have left the buffer, the
    /// walk still knows where it ends, and finds the entries after it.
    #[test]
    fn an_entry_outlives_its_headers_in_the_buffer() {
        let (buf, spans) = stream();
        let mut w = Walk::default();
        let first = w.peek(&buf, 0);
        w.pass(&first);
        let Step::Entry { start, end, .. } = w.peek(&buf, 0) else {
            panic!()
        };
        assert_eq!(end - start, spans[1].1);
        // The buffer now starts inside that entry.
        let at = start + 600;
        assert!(matches!(w.peek(&buf[at as usize..], at), Step::Entry { end: e, .. } if e == end));
        w.pass(&Step::Entry {
            start,
            end,
            mark: 0,
        });
        assert!(
            matches!(w.peek(&buf[at as usize..], at), Step::Entry { start: s, .. } if s == end)
        );
    }

    #[test]
    fn a_damaged_header_ends_the_walk() {
        let (mut buf, _) = stream();
        buf[512 + 3] ^= 1;
        assert_eq!(walk_all(&buf, buf.len()), [512]);
    }

    #[test]
    fn marks_follow_names_not_contents() {
        let entry = |name: &str, data: &[u8]| {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_path(name).unwrap();
            h.set_mtime(data.len() as u64);
            h.set_cksum();
            b.append(&h, data).unwrap();
            match Walk::default().peek(b.get_ref(), 0) {
                Step::Entry { mark, .. } => mark,
                s => panic!("{s:?}"),
            }
        };
        assert_eq!(entry("a", b"one"), entry("a", b"other"));
        assert_ne!(entry("a", b"one"), entry("b", b"one"));
    }

    #[test]
    fn sizes_in_every_form() {
        assert_eq!(octal_or_binary(b"00000000017\0"), Some(15));
        assert_eq!(octal_or_binary(b"     17 \0\0\0\0"), Some(15));
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[4..].copy_from_slice(&(1u64 << 40).to_be_bytes());
        assert_eq!(octal_or_binary(&big), Some(1 << 40));
        assert_eq!(octal_or_binary(b"9\0\0\0\0\0\0\0\0\0\0\0"), None);
        assert_eq!(
            pax_record(b"18 size=123456789\n", "size"),
            Some(&b"123456789"[..])
        );
        assert_eq!(pax_record(b"12 mtime=15\n", "size"), None);
        assert_eq!(pax_record(b"99 size=1\n", "size"), None);
        assert_eq!(pax_record(b"11 sizes=1\n", "size"), None);
        let mut field = [0u8; 8];
        field[0] = 0x80;
        assert_eq!(octal_or_binary(&field), None);
    }
}
