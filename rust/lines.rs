//! Line splitting: where records start and end, and how the input is cut for parallel work.

/// The UTF-8 byte order mark, ignored at the very start of the input.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Calls `f(line)` for every physical line: split on `\n`, a `\r` before it dropped. A last
/// line without a newline counts (kept as is); the empty remainder after a final newline does not.
#[inline]
pub fn for_each_line(data: &[u8], mut f: impl FnMut(&[u8])) {
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', data) {
        f(trim_cr(&data[start..end]));
        start = end + 1;
    }
    if start < data.len() {
        f(&data[start..]);
    }
}

#[inline]
fn trim_cr(line: &[u8]) -> &[u8] {
    match line.split_last() {
        Some((b'\r', rest)) => rest,
        _ => line,
    }
}

/// Lines of only spaces and tabs (or nothing) are skipped and counted as blank.
#[inline]
pub fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|&b| b == b' ' || b == b'\t')
}

/// Where a piece's invalid UTF-8 is, found lazily: one pass over the piece, and lines before
/// the next bad byte need no check of their own. Lines must be asked about in input order.
pub struct Utf8Scan<'a> {
    data: &'a [u8],
    /// Offset of the next invalid byte, or `usize::MAX`.
    next_bad: usize,
}

impl<'a> Utf8Scan<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            next_bad: first_bad(data, 0),
        }
    }

    /// Whether `line` (a sub-slice of the data, later than any asked about before) is valid.
    #[inline]
    pub fn is_valid(&mut self, line: &[u8]) -> bool {
        let end = line.as_ptr() as usize - self.data.as_ptr() as usize + line.len();
        if end <= self.next_bad {
            return true;
        }
        // The bad byte is in this line ('\n' is ASCII, so no invalid sequence spans lines).
        self.next_bad = first_bad(self.data, end);
        false
    }
}

fn first_bad(data: &[u8], from: usize) -> usize {
    match simdutf8::compat::from_utf8(&data[from..]) {
        Ok(_) => usize::MAX,
        Err(e) => from + e.valid_up_to(),
    }
}

/// Cuts `data` into pieces of about `target` bytes, each ending just after a `\n` (or at the
/// end of the input), so that no line is split and the pieces keep input order.
pub fn split_at_newlines(data: &[u8], target: usize) -> Vec<&[u8]> {
    let target = target.max(1);
    let mut pieces = Vec::with_capacity(data.len() / target + 1);
    let mut rest = data;
    while rest.len() > target {
        match memchr::memchr(b'\n', &rest[target..]) {
            Some(i) => {
                let (piece, tail) = rest.split_at(target + i + 1);
                pieces.push(piece);
                rest = tail;
            }
            None => break,
        }
    }
    if !rest.is_empty() {
        pieces.push(rest);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(data: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for_each_line(data, |l| out.push(l.to_vec()));
        out
    }

    #[test]
    fn splits_lines() {
        assert_eq!(lines(b""), Vec::<Vec<u8>>::new());
        assert_eq!(lines(b"\n"), vec![b"".to_vec()]);
        assert_eq!(lines(b"a\r\nb"), vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(
            lines(b"a\n\nb\n"),
            vec![b"a".to_vec(), b"".to_vec(), b"b".to_vec()]
        );
        assert_eq!(lines(b"a\r\r\n"), vec![b"a\r".to_vec()]);
        assert_eq!(lines(b"a\r"), vec![b"a\r".to_vec()]);
    }

    #[test]
    fn utf8_scan_flags_exactly_the_bad_lines() {
        let data = b"ok\nbad \xff\n\xe2\x82\nfine \xe2\x82\xac\r\nlast \xc3";
        let mut scan = Utf8Scan::new(data);
        let mut valid = Vec::new();
        for_each_line(data, |line| valid.push(scan.is_valid(line)));
        assert_eq!(valid, vec![true, false, false, true, false]);
    }

    #[test]
    fn blank_lines() {
        assert!(is_blank(b""));
        assert!(is_blank(b" \t "));
        assert!(!is_blank(b" \r"));
        assert!(!is_blank(b"{}"));
    }

    #[test]
    fn pieces_cover_the_input_at_line_ends() {
        let data = b"aaa\nbb\nc\ndddd\ne";
        for target in 1..20 {
            let pieces = split_at_newlines(data, target);
            assert_eq!(pieces.concat(), data.to_vec());
            for p in &pieces[..pieces.len() - 1] {
                assert_eq!(p.last(), Some(&b'\n'));
            }
        }
    }
}
