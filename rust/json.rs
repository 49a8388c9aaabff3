//! A strict RFC 8259 scanner for one line, specialised for what logsieve needs.
//!
//! It validates the whole line without building a tree: the top-level object's members come
//! back as byte spans (key, value, kind), nested values are only checked. Output columns are
//! then cut straight from the input bytes, which is what makes `extra` cheap and lossless.
//! The caller has already checked that the line is valid UTF-8.

/// What kind of JSON value a span holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Number,
    Object,
    Array,
    Bool,
    Null,
}

impl Kind {
    /// "a string", "an array", ... for error messages.
    pub fn described(self) -> &'static str {
        match self {
            Kind::String => "a string",
            Kind::Number => "a number",
            Kind::Object => "an object",
            Kind::Array => "an array",
            Kind::Bool => "a boolean",
            Kind::Null => "null",
        }
    }
}

/// A value's span in the line. For strings the span excludes the quotes.
#[derive(Debug, Clone, Copy)]
pub struct Value {
    pub start: usize,
    pub end: usize,
    pub kind: Kind,
    /// A string containing backslash escapes (must be unescaped before use).
    pub escaped: bool,
    /// A number without fraction or exponent.
    pub integer: bool,
    /// No insignificant whitespace inside (the span can be copied into compact JSON as is).
    pub compact: bool,
}

/// One member of the top-level object; `key_*` is the span between the key's quotes.
#[derive(Debug, Clone, Copy)]
pub struct Member {
    pub key_start: usize,
    pub key_end: usize,
    pub key_escaped: bool,
    pub value: Value,
}

/// Where and why a line is not JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntaxError {
    pub at: usize,
    pub what: &'static str,
}

/// Bytes that end the fast path inside a string: quote, backslash, control characters.
static STRING_STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Bit `i` set when byte `i` of the 16 at `chunk` is a quote, a backslash or a control character.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn stop_mask16(chunk: &[u8]) -> u32 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    assert!(chunk.len() >= 16);
    // SAFETY: SSE2 is part of the x86_64 baseline, and the unaligned load reads 16 bytes of
    // `chunk`, which holds at least that many (asserted above).
    unsafe {
        let v = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
        let ctrl = _mm_set1_epi8(0x1f);
        let is_ctrl = _mm_cmpeq_epi8(_mm_max_epu8(v, ctrl), ctrl); // v <= 0x1f
        let is_quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let is_backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(is_quote, is_backslash), is_ctrl)) as u32
    }
}

/// Index of the first byte at or after `pos` that is a quote, a backslash or a control
/// character (or `b.len()`): sixteen bytes at a time with SSE2 (baseline on x86_64), then
/// eight at a time (SWAR), then byte by byte.
#[inline]
fn skip_plain(b: &[u8], pos: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    let pos = {
        let mut pos = pos;
        while let Some(chunk) = b.get(pos..pos + 16) {
            let mask = stop_mask16(chunk);
            if mask != 0 {
                return pos + mask.trailing_zeros() as usize;
            }
            pos += 16;
        }
        pos
    };
    skip_plain_swar(b, pos)
}

#[inline]
fn skip_plain_swar(b: &[u8], mut pos: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = b.get(pos..pos + 8) {
        let w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let quote = w ^ (ONES * u64::from(b'"'));
        let backslash = w ^ (ONES * u64::from(b'\\'));
        // Classic "has a zero byte" / "has a byte below n" tests; the lowest flagged byte is exact.
        let hits = ((quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (w.wrapping_sub(ONES * 0x20) & !w))
            & HIGH;
        if hits != 0 {
            return pos + (hits.trailing_zeros() / 8) as usize;
        }
        pos += 8;
    }
    while pos < b.len() && !STRING_STOP[b[pos] as usize] {
        pos += 1;
    }
    pos
}

/// Nesting deeper than this is refused instead of risking the stack.
const MAX_DEPTH: u32 = 512;

struct Scanner<'a> {
    b: &'a [u8],
    pos: usize,
    /// Whitespace bytes skipped so far; a value is compact when this did not move inside it.
    ws: usize,
}

type Result<T> = std::result::Result<T, SyntaxError>;

/// Parses `line` as exactly one JSON value surrounded by optional whitespace.
///
/// For an object, its members are appended to `members` (cleared first) and `Ok(Kind::Object)`
/// is returned; for any other value only its kind.
pub fn parse_line(line: &[u8], members: &mut Vec<Member>) -> Result<Kind> {
    members.clear();
    let mut s = Scanner {
        b: line,
        pos: 0,
        ws: 0,
    };
    s.skip_ws();
    let kind = if s.peek() == Some(b'{') {
        s.top_object(members)?;
        Kind::Object
    } else {
        s.value(0)?.kind
    };
    s.skip_ws();
    if s.pos != line.len() {
        return Err(s.err("unexpected data after the JSON value"));
    }
    Ok(kind)
}

impl Scanner<'_> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    /// Cold, like every error constructor: it marks the paths of invalid input as unlikely, so
    /// the layout keeps the valid path straight (a part of what the PGO build gains).
    #[cold]
    #[inline(never)]
    fn err(&self, what: &'static str) -> SyntaxError {
        SyntaxError { at: self.pos, what }
    }

    /// Most JSON logs are compact: one test, and the loop only when there is whitespace.
    #[inline(always)]
    fn skip_ws(&mut self) {
        if let Some(b' ' | b'\t' | b'\r' | b'\n') = self.peek() {
            self.skip_ws_slow();
        }
    }

    #[inline(never)]
    fn skip_ws_slow(&mut self) {
        let start = self.pos;
        while let Some(b' ' | b'\t' | b'\r' | b'\n') = self.peek() {
            self.pos += 1;
        }
        self.ws += self.pos - start;
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> Result<()> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(what))
        }
    }

    fn top_object(&mut self, members: &mut Vec<Member>) -> Result<()> {
        self.pos += 1; // '{'
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.err("expected a string key"));
            }
            let (key_start, key_end, key_escaped) = self.string()?;
            self.skip_ws();
            self.expect(b':', "expected ':' after the key")?;
            self.skip_ws();
            let value = self.value(1)?;
            members.push(Member {
                key_start,
                key_end,
                key_escaped,
                value,
            });
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() == Some(b'}') {
                        return Err(self.err("trailing comma before '}'"));
                    }
                }
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                None => return Err(self.err("unterminated object")),
                _ => return Err(self.err("expected ',' or '}' after a member")),
            }
        }
    }

    /// Any value at the current position (whitespace already skipped).
    #[inline(always)]
    fn value(&mut self, depth: u32) -> Result<Value> {
        let start = self.pos;
        let ws_before = self.ws;
        let mut integer = false;
        let kind = match self.peek() {
            Some(b'"') => {
                let (s, e, esc) = self.string()?;
                return Ok(Value {
                    start: s,
                    end: e,
                    kind: Kind::String,
                    escaped: esc,
                    integer: false,
                    compact: true,
                });
            }
            Some(b'{') => {
                self.nested::<true>(depth)?;
                Kind::Object
            }
            Some(b'[') => {
                self.nested::<false>(depth)?;
                Kind::Array
            }
            Some(b't') => self.literal(b"true", Kind::Bool)?,
            Some(b'f') => self.literal(b"false", Kind::Bool)?,
            Some(b'n') => self.literal(b"null", Kind::Null)?,
            Some(b'-' | b'0'..=b'9') => {
                integer = self.number()?;
                Kind::Number
            }
            None => return Err(self.err("expected a value, found the end of the line")),
            Some(b'N' | b'I') => return Err(self.err("NaN and Infinity are not JSON")),
            Some(b'\'') => return Err(self.err("strings must use double quotes")),
            Some(_) => return Err(self.err("expected a value")),
        };
        Ok(Value {
            start,
            end: self.pos,
            kind,
            escaped: false,
            integer,
            compact: self.ws == ws_before,
        })
    }

    fn literal(&mut self, word: &'static [u8], kind: Kind) -> Result<Kind> {
        if self.b[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(kind)
        } else {
            Err(self.err("invalid literal (expected true, false or null)"))
        }
    }

    /// An object (`OBJECT`) or array below the top level: validated, not collected.
    #[inline(never)]
    fn nested<const OBJECT: bool>(&mut self, depth: u32) -> Result<()> {
        if depth >= MAX_DEPTH {
            return Err(self.err("nested deeper than 512 levels"));
        }
        let close = if OBJECT { b'}' } else { b']' };
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(close) {
            self.pos += 1;
            return Ok(());
        }
        loop {
            if OBJECT {
                if self.peek() != Some(b'"') {
                    return Err(self.err("expected a string key"));
                }
                self.string()?;
                self.skip_ws();
                self.expect(b':', "expected ':' after the key")?;
                self.skip_ws();
            }
            self.element(depth + 1)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() == Some(close) {
                        return Err(self.err("trailing comma"));
                    }
                }
                Some(c) if c == close => {
                    self.pos += 1;
                    return Ok(());
                }
                None if OBJECT => return Err(self.err("unterminated object")),
                None => return Err(self.err("unterminated array")),
                _ if OBJECT => return Err(self.err("expected ',' or '}' after a member")),
                _ => return Err(self.err("expected ',' or ']' after an element")),
            }
        }
    }

    /// A value inside a nested one: only validated, so no span or flags are kept.
    #[inline(always)]
    fn element(&mut self, depth: u32) -> Result<()> {
        match self.peek() {
            Some(b'"') => self.string().map(drop),
            Some(b'-' | b'0'..=b'9') => self.number().map(drop),
            Some(b'{') => self.nested::<true>(depth),
            Some(b'[') => self.nested::<false>(depth),
            _ => self.value(depth).map(drop),
        }
    }

    /// A string at the opening quote; returns the span inside the quotes and whether it has escapes.
    ///
    /// Most strings are short and plain: one or two 16-byte probes find their closing quote
    /// inline (log fields such as ids, RFC 3339 timestamps and e-mail addresses are 16-31 bytes).
    #[inline(always)]
    fn string(&mut self) -> Result<(usize, usize, bool)> {
        let start = self.pos + 1;
        #[cfg(target_arch = "x86_64")]
        if let Some(chunk) = self.b.get(start..start + 16) {
            let mut mask = stop_mask16(chunk);
            if mask == 0
                && let Some(next) = self.b.get(start + 16..start + 32)
            {
                mask = stop_mask16(next) << 16;
            }
            if mask != 0 {
                let end = start + mask.trailing_zeros() as usize;
                if self.b[end] == b'"' {
                    self.pos = end + 1;
                    return Ok((start, end, false));
                }
            }
        }
        self.string_slow(start)
    }

    /// The general case of [`Scanner::string`]: long strings, escapes, errors.
    #[inline(never)]
    fn string_slow(&mut self, start: usize) -> Result<(usize, usize, bool)> {
        self.pos = start;
        let mut escaped = false;
        loop {
            self.pos = skip_plain(self.b, self.pos);
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok((start, self.pos - 1, escaped));
                }
                Some(b'\\') => {
                    escaped = true;
                    self.pos += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.pos += 1
                        }
                        Some(b'u') => {
                            let hex = self.b.get(self.pos + 1..self.pos + 5);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return Err(self.err("invalid \\u escape (expected 4 hex digits)"));
                            }
                            self.pos += 5;
                        }
                        _ => return Err(self.err("invalid escape in string")),
                    }
                }
                Some(_) => {
                    return Err(self.err("raw control character in string (must be escaped)"));
                }
                None => return Err(self.err("unterminated string")),
            }
        }
    }

    /// A number per the JSON grammar that fits a 64-bit float; returns whether it is an integer.
    #[inline(always)]
    fn number(&mut self) -> Result<bool> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let int_start = self.pos;
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    return Err(self.err("leading zeros are not allowed in numbers"));
                }
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.err("expected a digit")),
        }
        let int_digits = self.pos - int_start;
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                return Err(self.err("expected a digit after the decimal point"));
            }
            self.digits();
            integer = false;
        }
        let mut exponent = false;
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                return Err(self.err("expected a digit in the exponent"));
            }
            self.digits();
            integer = false;
            exponent = true;
        }
        // Only an exponent or more than 308 integer digits can leave the range of an f64.
        if exponent || int_digits > 308 {
            // The span is ASCII digits and signs only.
            let text = std::str::from_utf8(&self.b[start..self.pos]).unwrap_or("inf");
            if !text.parse::<f64>().is_ok_and(f64::is_finite) {
                return Err(SyntaxError {
                    at: start,
                    what: "number does not fit a 64-bit float",
                });
            }
        }
        Ok(integer)
    }

    /// Skips ASCII digits, eight at a time while eight bytes remain.
    #[inline(always)]
    fn digits(&mut self) {
        const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        while let Some(chunk) = self.b.get(self.pos..self.pos + 8) {
            // Per byte x = b ^ '0': a digit is x < 10, i.e. neither x nor (x & 0x7f) + 0x76
            // has its high bit set (no carries: (x & 0x7f) + 0x76 <= 0xf5).
            let x = u64::from_le_bytes(chunk.try_into().expect("8 bytes")) ^ 0x3030_3030_3030_3030;
            let other = (((x & LOW7) + 0x7676_7676_7676_7676) | x) & HIGH;
            if other != 0 {
                self.pos += (other.trailing_zeros() / 8) as usize;
                return;
            }
            self.pos += 8;
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
    }
}

/// Appends the unescaped text of a JSON string body to `out`.
///
/// Fails on a lone UTF-16 surrogate, which JSON's grammar allows but UTF-8 cannot hold.
pub fn unescape(raw: &[u8], out: &mut Vec<u8>) -> std::result::Result<(), &'static str> {
    let mut i = 0;
    while i < raw.len() {
        let Some(off) = memchr::memchr(b'\\', &raw[i..]) else {
            out.extend_from_slice(&raw[i..]);
            break;
        };
        out.extend_from_slice(&raw[i..i + off]);
        i += off + 1;
        let c = raw[i];
        i += 1;
        let simple = match c {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            _ => 0, // 'u', validated by the scanner
        };
        if c != b'u' {
            out.push(simple);
            continue;
        }
        let hi = hex4(&raw[i..i + 4]);
        i += 4;
        let code = match hi {
            0xD800..=0xDBFF => {
                let lo = (raw.get(i..i + 2) == Some(b"\\u"))
                    .then(|| hex4(&raw[i + 2..i + 6]))
                    .filter(|lo| (0xDC00..=0xDFFF).contains(lo))
                    .ok_or("a lone UTF-16 surrogate escape")?;
                i += 6;
                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err("a lone UTF-16 surrogate escape"),
            _ => hi,
        };
        let ch = char::from_u32(code).ok_or("an invalid \\u escape")?;
        let mut buf = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
    }
    Ok(())
}

fn hex4(h: &[u8]) -> u32 {
    h.iter().fold(0, |acc, &c| {
        acc * 16 + (c as char).to_digit(16).unwrap_or(0)
    })
}

/// Appends `value` (one valid JSON value) without insignificant whitespace; whitespace inside
/// strings is kept.
///
/// Strings are copied whole, their end found by the same scan as [`Scanner::string`]; only the
/// short runs between them are looked at byte by byte.
pub fn write_compact(value: &[u8], out: &mut Vec<u8>) {
    out.reserve(value.len());
    let mut pos = 0;
    while pos < value.len() {
        let run = pos;
        while pos < value.len() && !matches!(value[pos], b'"' | b' ' | b'\t' | b'\r' | b'\n') {
            pos += 1;
        }
        out.extend_from_slice(&value[run..pos]);
        match value.get(pos) {
            Some(b'"') => {
                let open = pos;
                pos = string_end(value, pos + 1);
                out.extend_from_slice(&value[open..pos]);
            }
            Some(_) => pos += 1, // whitespace between tokens
            None => {}
        }
    }
}

/// The index just past the closing quote of the string whose contents start at `pos` (or the
/// end of `b` if it is unterminated, which a validated value never is).
///
/// Not [`Scanner::string`]: that one checks every escape again, which a validated value does
/// not need (using it here measured 1.7% more instructions per line on the benchmark corpus).
fn string_end(b: &[u8], mut pos: usize) -> usize {
    loop {
        pos = skip_plain(b, pos);
        match b.get(pos) {
            Some(b'"') => return pos + 1,
            Some(b'\\') => pos += 2,
            Some(_) => pos += 1,
            None => return b.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<(Kind, Vec<Member>)> {
        let mut m = Vec::new();
        parse_line(s.as_bytes(), &mut m).map(|k| (k, m))
    }

    #[test]
    fn accepts_valid_json() {
        for s in [
            "{}",
            " { } ",
            r#"{"a":1,"b":[1,2,{"c":null}],"d":"x\"y\\z\u00e9\ud83d\ude00","e":-0.5e+10}"#,
            "\t{\"a\" : true ,\r\"b\":false}\t",
            r#"{"a":"é😀"}"#,
            "{\"a\":1e-400}",
        ] {
            assert_eq!(parse(s).map(|r| r.0), Ok(Kind::Object), "{s}");
        }
        assert_eq!(parse("[1]").unwrap().0, Kind::Array);
        assert_eq!(parse("\"s\"").unwrap().0, Kind::String);
        assert_eq!(parse("12").unwrap().0, Kind::Number);
        assert_eq!(parse("null").unwrap().0, Kind::Null);
    }

    #[test]
    fn rejects_invalid_json() {
        for s in [
            "",
            "   ",
            "{",
            "{\"a\":1,}",
            "[1,]",
            "{'a':1}",
            "{\"a\":NaN}",
            "{\"a\":Infinity}",
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":.5}",
            "{\"a\":1e}",
            "{\"a\":+1}",
            "{\"a\":1e999}",
            "{\"a\":-1e999}",
            "{\"a\":\"tab\there\"}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\\u12\"}",
            "{\"a\":tru}",
            "{\"a\":1}{\"b\":2}",
            "{\"a\":1} x",
            "{a:1}",
            "{\"a\" 1}",
            "{\"a\":1 \"b\":2}",
            "{\"a\":\"unterminated}",
            "[[[[",
        ] {
            assert!(parse(s).is_err(), "accepted {s:?}");
        }
        let deep = "[".repeat(600) + &"]".repeat(600);
        assert!(parse(&format!("{{\"a\":{deep}}}")).is_err());
    }

    #[test]
    fn members_and_spans() {
        let line = r#"{"ts": "2025", "n" : 12, "o":{"x": 1}, "k\u0065y":"v\n"}"#;
        let (_, m) = parse(line).unwrap();
        let b = line.as_bytes();
        assert_eq!(m.len(), 4);
        assert_eq!(&b[m[0].key_start..m[0].key_end], b"ts");
        assert_eq!(&b[m[0].value.start..m[0].value.end], b"2025");
        assert!(m[1].value.integer && m[1].value.compact);
        assert_eq!(&b[m[2].value.start..m[2].value.end], br#"{"x": 1}"#);
        assert!(!m[2].value.compact);
        assert!(m[3].key_escaped && m[3].value.escaped);
    }

    #[test]
    fn error_positions() {
        assert_eq!(parse("{\"a\":1,}").unwrap_err().at, 7);
        assert_eq!(parse("{\"a\":1e999}").unwrap_err().at, 5);
        assert_eq!(
            parse("{} {}").unwrap_err().what,
            "unexpected data after the JSON value"
        );
    }

    #[test]
    fn unescapes() {
        let mut out = Vec::new();
        unescape(br#"a\"b\\c\/\n\u00e9\ud83d\ude00\t"#, &mut out).unwrap();
        assert_eq!(out, "a\"b\\c/\né😀\t".as_bytes());
        assert!(unescape(br"\ud83d", &mut Vec::new()).is_err());
        assert!(unescape(br"\ude00x", &mut Vec::new()).is_err());
    }

    #[test]
    fn skip_plain_finds_the_first_stop_byte() {
        let text = b"abcdefghijklmnopqrstuvwxyz0123456789";
        for stop in [b'"', b'\\', b'\n', 0u8, 0x1f] {
            for at in 0..text.len() {
                let mut t = text.to_vec();
                t[at] = stop;
                if at + 3 < t.len() {
                    t[at + 3] = b'"';
                }
                assert_eq!(skip_plain(&t, 0), at, "stop {stop} at {at}");
                assert_eq!(skip_plain(&t, at), at);
            }
        }
        assert_eq!(skip_plain(text, 0), text.len());
        assert_eq!(skip_plain_swar(text, 0), text.len());
        for at in 0..text.len() {
            let mut t = text.to_vec();
            t[at] = b'"';
            assert_eq!(skip_plain_swar(&t, 0), at);
        }
        assert_eq!(skip_plain("é😀 \x7f\u{80}".as_bytes(), 0), 10);
    }

    #[test]
    fn digits_stop_at_the_first_other_byte() {
        let all: Vec<u8> = (0..=255u8).collect();
        for stop in all.iter().copied().filter(|c| !c.is_ascii_digit()) {
            for at in 0..20 {
                let mut text = b"12345678901234567890123".to_vec();
                text[at] = stop;
                let mut s = Scanner {
                    b: &text,
                    pos: 0,
                    ws: 0,
                };
                s.digits();
                assert_eq!(s.pos, at, "stop byte {stop} at {at}");
            }
        }
        let mut s = Scanner {
            b: b"0123456789",
            pos: 0,
            ws: 0,
        };
        s.digits();
        assert_eq!(s.pos, 10);
    }

    #[test]
    fn compacts() {
        let mut out = Vec::new();
        write_compact(br#"{ "a b" : [ 1, "x \" y" ] }"#, &mut out);
        assert_eq!(out, br#"{"a b":[1,"x \" y"]}"#);
        for (spaced, compact) in [
            (
                &br#"[ "\\" , "\\\"" ,"a\tb" ]"#[..],
                &br#"["\\","\\\"","a\tb"]"#[..],
            ),
            (
                br#" { "k" :	{ "x y z 1234567890 1234567890" : true } } "#,
                br#"{"k":{"x y z 1234567890 1234567890":true}}"#,
            ),
            (br#"-1.5e3"#, br#"-1.5e3"#),
            (br#""""#, br#""""#),
        ] {
            out.clear();
            write_compact(spaced, &mut out);
            assert_eq!(out, compact, "{}", String::from_utf8_lossy(spaced));
        }
    }
}
