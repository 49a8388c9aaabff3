//! Error records as JSON Lines, rendered in bulk: what a per-row `orjson.dumps` of
//! `{"source", "line", "error", "detail", "raw" | "raw_base64"}` gives, byte for byte.

use std::io::Write;

use arrow_array::{Array, BinaryArray, Int64Array, RecordBatch, StringArray};
use base64::Engine as _;

use crate::errors::CoreError;

/// Rendered bytes are handed to the writer in pieces of about this size, so that rendering a
/// huge `raw` never holds it twice.
const PIECE: usize = 1 << 20;

/// Appends one JSON line per error record of `errors` (the core's error schema) to `out`.
///
/// `raw` is written as text when it is UTF-8, else as standard base64 in `raw_base64`.
pub fn write_error_lines(
    errors: &RecordBatch,
    source: &str,
    out: &mut Vec<u8>,
) -> Result<(), CoreError> {
    out.reserve(errors.get_array_memory_size() + errors.num_rows() * 64);
    write_error_lines_to(errors, source, out)
}

/// Writes one JSON line per error record of `errors` to `sink`, a piece of about 1 MiB at a
/// time: memory stays that piece, whatever the length of a line.
pub fn write_error_lines_to<W: Write>(
    errors: &RecordBatch,
    source: &str,
    sink: &mut W,
) -> Result<(), CoreError> {
    let column = |i: usize| errors.column(i).as_any();
    let (Some(line), Some(code), Some(detail), Some(raw)) = (
        column(0).downcast_ref::<Int64Array>(),
        column(1).downcast_ref::<StringArray>(),
        column(2).downcast_ref::<StringArray>(),
        column(3).downcast_ref::<BinaryArray>(),
    ) else {
        return Err(CoreError::Internal(
            "error records do not have the error schema".into(),
        ));
    };
    let mut prefix = b"{\"source\":".to_vec();
    write_json_string(source.as_bytes(), &mut prefix);
    prefix.extend_from_slice(b",\"line\":");
    let mut out = Vec::with_capacity(2 * PIECE);
    for i in 0..errors.num_rows() {
        out.extend_from_slice(&prefix);
        write_i64(line.value(i), &mut out);
        out.extend_from_slice(b",\"error\":");
        write_json_string(code.value(i).as_bytes(), &mut out);
        out.extend_from_slice(b",\"detail\":");
        write_json_string(detail.value(i).as_bytes(), &mut out);
        let bytes = raw.value(i);
        if simdutf8::basic::from_utf8(bytes).is_ok() {
            out.extend_from_slice(b",\"raw\":\"");
            // Escaping is byte by byte (multi-byte characters pass unchanged): any cut is fine.
            for piece in bytes.chunks(PIECE) {
                write_json_text(piece, &mut out);
                spill(&mut out, sink)?;
            }
        } else {
            out.extend_from_slice(b",\"raw_base64\":\"");
            for piece in bytes.chunks(PIECE / 3 * 3) {
                write_base64(piece, &mut out); // whole 3-byte groups: no padding but at the end
                spill(&mut out, sink)?;
            }
        }
        out.extend_from_slice(b"\"}\n");
        spill(&mut out, sink)?;
    }
    sink.write_all(&out).map_err(CoreError::from)
}

/// Hands `out` to `sink` once it holds a piece's worth.
fn spill<W: Write>(out: &mut Vec<u8>, sink: &mut W) -> Result<(), CoreError> {
    if out.len() >= PIECE {
        sink.write_all(out)?;
        out.clear();
    }
    Ok(())
}

/// Standard base64 with padding, as Python's `base64.b64encode`.
fn write_base64(bytes: &[u8], out: &mut Vec<u8>) {
    let engine = base64::engine::general_purpose::STANDARD;
    let start = out.len();
    out.resize(start + bytes.len().div_ceil(3) * 4, 0);
    let written = engine
        .encode_slice(bytes, &mut out[start..])
        .expect("room for the padded encoding");
    out.truncate(start + written);
}

/// Decimal text of `n`, as JSON (and Python) write integers.
fn write_i64(n: i64, out: &mut Vec<u8>) {
    write!(out, "{n}").expect("writing to a Vec cannot fail");
}

/// A JSON string of UTF-8 `text`, escaped as orjson does: `"` `\` and control characters
/// only (`\b \t \n \f \r` short, the rest `\u00xx`); everything else verbatim.
pub fn write_json_string(text: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    write_json_text(text, out);
    out.push(b'"');
}

/// `text` escaped as inside a JSON string, without the quotes.
fn write_json_text(text: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut start = 0;
    for (i, &b) in text.iter().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            b'\t' => b't',
            b'\n' => b'n',
            0x0c => b'f',
            b'\r' => b'r',
            0..=0x1f => 0,
            _ => continue,
        };
        out.extend_from_slice(&text[start..i]);
        if short == 0 {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.push(b'\\');
            out.push(short);
        }
        start = i + 1;
    }
    out.extend_from_slice(&text[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_orjson() {
        let mut out = Vec::new();
        write_json_string(
            "\u{0}\u{1}\u{8}\t\n\u{b}\u{c}\r\u{1f}\u{7f}/\"\\é😀".as_bytes(),
            &mut out,
        );
        assert_eq!(
            out,
            "\"\\u0000\\u0001\\b\\t\\n\\u000b\\f\\r\\u001f\u{7f}/\\\"\\\\é😀\"".as_bytes()
        );
    }

    #[test]
    fn base64_like_python() {
        let mut out = Vec::new();
        for (raw, b64) in [
            (&b""[..], ""),
            (b"\xff", "/w=="),
            (b"ab\xff", "YWL/"),
            (b"\xfe\xff\x00\x01", "/v8AAQ=="),
        ] {
            out.clear();
            write_base64(raw, &mut out);
            assert_eq!(out, b64.as_bytes());
        }
    }

    #[test]
    fn numbers() {
        for n in [0, 7, -1, 42, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            write_i64(n, &mut out);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }
}
