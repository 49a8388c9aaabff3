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
