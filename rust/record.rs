//! The record contract: one line in, one valid row or one error out, rules checked in order.

use std::fmt::Write as _;

use crate::json::{self, Kind, Member, Value};
use crate::timestamp::{self, TimestampError};

/// The error codes of the contract, in the order their rules are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidJson,
    NotAnObject,
    MissingField,
    InvalidField,
    InvalidTimestamp,
}

impl ErrorCode {
    /// Every code, in the order the rules are checked.
    pub const ALL: [ErrorCode; 5] = [
        Self::InvalidJson,
        Self::NotAnObject,
        Self::MissingField,
        Self::InvalidField,
        Self::InvalidTimestamp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::NotAnObject => "not_an_object",
            Self::MissingField => "missing_field",
            Self::InvalidField => "invalid_field",
            Self::InvalidTimestamp => "invalid_timestamp",
        }
    }
}

/// Why a line was refused: the code and a sentence a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub code: ErrorCode,
    pub detail: String,
}

impl LineError {
    /// Cold: every call of it is on a rejected line's path, which the layout moves aside.
    #[cold]
    #[inline(never)]
    fn new(code: ErrorCode, detail: String) -> Self {
        Self { code, detail }
    }
}

/// The names of the three required members (configurable; output columns keep fixed names).
#[derive(Debug, Clone)]
pub struct FieldNames {
    pub timestamp: String,
    pub user_id: String,
    pub action: String,
}

impl Default for FieldNames {
    fn default() -> Self {
        Self {
            timestamp: "timestamp".into(),
            user_id: "user_id".into(),
            action: "action".into(),
        }
    }
}

const TIMESTAMP: usize = 0;
const USER_ID: usize = 1;
const ACTION: usize = 2;

/// Checks lines against the contract, reusing its buffers from line to line.
///
/// After a successful [`Validator::check`], the accessors describe the row.
pub struct Validator {
    names: [Vec<u8>; 3],
    members: Vec<Member>,
    /// Index into `members` of the last occurrence of each required field.
    slots: [Option<usize>; 3],
    /// Unescaped keys, only filled for lines that have an escaped key.
    keys: Vec<Vec<u8>>,
    /// Per member: its key's [`fingerprint`], and whether `extra` leaves it out (a required
    /// field, or shadowed by a later duplicate).
    prints: Vec<u64>,
    hidden: Vec<bool>,
    name_prints: [u64; 3],
    user_id: Text,
    action: Text,
    scratch: Vec<u8>,
    micros: i64,
}

impl Validator {
    pub fn new(names: &FieldNames) -> Self {
        Self {
            names: [
                names.timestamp.as_bytes().to_vec(),
                names.user_id.as_bytes().to_vec(),
                names.action.as_bytes().to_vec(),
            ],
            members: Vec::with_capacity(16),
            slots: [None; 3],
            keys: Vec::new(),
            prints: Vec::with_capacity(16),
            hidden: Vec::with_capacity(16),
            name_prints: [
                fingerprint(names.timestamp.as_bytes()),
                fingerprint(names.user_id.as_bytes()),
                fingerprint(names.action.as_bytes()),
            ],
            user_id: Text::default(),
            action: Text::default(),
            scratch: Vec::with_capacity(64),
            micros: 0,
        }
    }

    pub fn micros(&self) -> i64 {
        self.micros
    }
    /// The row's `user_id`; `line` is the line just checked.
    pub fn user_id<'a>(&'a self, line: &'a [u8]) -> &'a [u8] {
        self.user_id.get(line)
    }
    /// The row's `action`; `line` is the line just checked.
    pub fn action<'a>(&'a self, line: &'a [u8]) -> &'a [u8] {
        self.action.get(line)
    }

    fn name(&self, slot: usize) -> &str {
        field_name(&self.names[slot])
    }

    /// Validates one non-blank line. On success the row is available through the accessors
    /// and [`Validator::write_extra`].
    pub fn check(&mut self, line: &[u8]) -> Result<(), LineError> {
        if simdutf8::basic::from_utf8(line).is_err() {
            let at = simdutf8::compat::from_utf8(line)
                .err()
                .map_or(0, |c| c.valid_up_to());
            return Err(LineError::new(
                ErrorCode::InvalidJson,
                format!("the line is not valid UTF-8 (bad byte at offset {at})"),
            ));
        }
        self.check_utf8(line)
    }

    /// [`Validator::check`] for a line already known to be valid UTF-8 (the pipeline checks
    /// whole pieces of input at once, which is cheaper than line by line).
    pub fn check_utf8(&mut self, line: &[u8]) -> Result<(), LineError> {
        let kind = json::parse_line(line, &mut self.members).map_err(|e| {
            let column = line[..e.at].iter().filter(|&&b| b & 0xC0 != 0x80).count() + 1;
            LineError::new(
                ErrorCode::InvalidJson,
                format!("invalid JSON at column {column}: {}", e.what),
            )
        })?;
        if kind != Kind::Object {
            return Err(LineError::new(
                ErrorCode::NotAnObject,
                format!("expected a JSON object, got {}", kind.described()),
            ));
        }
        self.find_required(line);
        self.check_present()?;
        self.check_fields(line)?;
        self.check_timestamp(line)
    }

    fn key<'a>(&'a self, line: &'a [u8], i: usize) -> &'a [u8] {
        if self.keys.is_empty() {
            let m = &self.members[i];
            &line[m.key_start..m.key_end]
        } else {
            &self.keys[i]
        }
    }

    fn find_required(&mut self, line: &[u8]) {
        self.keys.clear();
        if self.members.iter().any(|m| m.key_escaped) {
            for m in &self.members {
                let mut k = Vec::new();
                let raw = &line[m.key_start..m.key_end];
                if !m.key_escaped || json::unescape(raw, &mut k).is_err() {
                    k.clear();
                    k.extend_from_slice(raw);
                }
                self.keys.push(k);
            }
        }
        self.slots = [None; 3];
        self.prints.clear();
        self.hidden.clear();
        let (mut seen, mut seen_twice) = (0u64, false);
        for i in 0..self.members.len() {
            let key = self.key(line, i);
            let print = if self.keys.is_empty() {
                let m = &self.members[i];
                fingerprint_in(line, m.key_start, m.key_end)
            } else {
                fingerprint(key)
            };
            let slot =
                (0..3).find(|&s| self.name_prints[s] == print && same_key(&self.names[s], key));
            if let Some(slot) = slot {
                self.slots[slot] = Some(i); // the last occurrence wins
            }
            self.prints.push(print);
            self.hidden.push(slot.is_some());
            // One bit per print: no bit seen twice means no key seen twice.
            let bit = 1u64 << (print.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58);
            seen_twice |= seen & bit != 0;
            seen |= bit;
        }
        if !seen_twice {
            return;
        }
        // A member whose key appears again later is shadowed by it (the last one wins).
        let n = self.members.len();
        for i in 0..n {
            if !self.hidden[i]
                && (i + 1..n).any(|j| {
                    self.prints[j] == self.prints[i] && self.key(line, j) == self.key(line, i)
                })
            {
                self.hidden[i] = true;
            }
        }
    }

    fn required(&self, slot: usize) -> Option<Value> {
        self.slots[slot]
            .map(|i| self.members[i].value)
            .filter(|v| v.kind != Kind::Null)
    }

    fn check_present(&self) -> Result<(), LineError> {
        let mut missing = Vec::new();
        for slot in [TIMESTAMP, USER_ID, ACTION] {
            match self.slots[slot] {
                None => missing.push(format!("{} is missing", self.name(slot))),
                Some(i) if self.members[i].value.kind == Kind::Null => {
                    missing.push(format!("{} is null", self.name(slot)))
                }
                Some(_) => {}
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(LineError::new(
                ErrorCode::MissingField,
                format!("required field missing: {}", missing.join(", ")),
            ))
        }
    }

    fn check_fields(&mut self, line: &[u8]) -> Result<(), LineError> {
        let mut problems = Vec::new();
        let user_id = self.required(USER_ID).expect("checked present");
        match user_id.kind {
            Kind::Number if user_id.integer => {
                self.user_id.span = Some((user_id.start, user_id.end))
            }
            Kind::Number => problems.push(format!(
                "{} must be a non-empty string or an integer, got the number {}",
                self.name(USER_ID),
                String::from_utf8_lossy(&line[user_id.start..user_id.end])
            )),
            Kind::String => problems.extend(non_empty_text(
                line,
                user_id,
                &mut self.user_id,
                &self.names[USER_ID],
            )),
            other => problems.push(format!(
                "{} must be a non-empty string or an integer, got {}",
                self.name(USER_ID),
                other.described()
            )),
        }
        let action = self.required(ACTION).expect("checked present");
        match action.kind {
            Kind::String => problems.extend(non_empty_text(
                line,
                action,
                &mut self.action,
                &self.names[ACTION],
            )),
            other => problems.push(format!(
                "{} must be a non-empty string, got {}",
                self.name(ACTION),
                other.described()
            )),
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(LineError::new(ErrorCode::InvalidField, problems.join("; ")))
        }
    }

    fn check_timestamp(&mut self, line: &[u8]) -> Result<(), LineError> {
        let ts = self.required(TIMESTAMP).expect("checked present");
        let raw = &line[ts.start..ts.end];
        let parsed = match ts.kind {
            Kind::String if !ts.escaped => timestamp::parse_rfc3339(raw),
            Kind::String => {
                self.scratch.clear();
                match json::unescape(raw, &mut self.scratch) {
                    Ok(()) => timestamp::parse_rfc3339(&self.scratch),
                    Err(_) => Err(TimestampError::Format),
                }
            }
            Kind::Number => timestamp::parse_epoch_number(raw),
            other => {
                return Err(LineError::new(
                    ErrorCode::InvalidTimestamp,
                    format!(
                        "{} must be an RFC 3339 string or a Unix time number, got {}",
                        self.name(TIMESTAMP),
                        other.described()
                    ),
                ));
            }
        };
        match parsed {
            Ok(micros) => {
                self.micros = micros;
                Ok(())
            }
            Err(why) => {
                let mut detail = String::new();
                let shown = String::from_utf8_lossy(&raw[..raw.len().min(80)]);
                let _ = match ts.kind {
                    Kind::String => write!(detail, "{} \"{shown}\" {why}", self.name(TIMESTAMP)),
                    _ => write!(detail, "{} {shown} {why}", self.name(TIMESTAMP)),
                };
                Err(LineError::new(ErrorCode::InvalidTimestamp, detail))
            }
        }
    }

    /// Appends `extra` for the row just checked: every other member as compact JSON, or
    /// returns false (null) when there is none. Duplicate keys keep their last occurrence.
    ///
    /// Members already compact in the line and adjacent to each other are copied as one run.
    pub fn write_extra(&self, line: &[u8], out: &mut Vec<u8>) -> bool {
        let start = out.len();
        out.push(b'{');
        // The pending run of copied members: a span of `line`.
        let mut run: Option<(usize, usize)> = None;
        for (m, _) in self
            .members
            .iter()
            .zip(&self.hidden)
            .filter(|(_, hidden)| !**hidden)
        {
            let v = m.value;
            // Strings are stored without their quotes; widen the span to include them.
            let (s, e) = if v.kind == Kind::String {
                (v.start - 1, v.end + 1)
            } else {
                (v.start, v.end)
            };
            if v.compact && s == m.key_end + 2 {
                // `"key":value` with nothing in between: the member is its own compact text.
                let member = (m.key_start - 1, e);
                run = match run {
                    // Only the comma separates it from the run.
                    Some((rs, re)) if re + 1 == member.0 => Some((rs, member.1)),
                    Some(done) => {
                        push_member(out, start, &line[done.0..done.1]);
                        Some(member)
                    }
                    None => Some(member),
                };
                continue;
            }
            if let Some(done) = run.take() {
                push_member(out, start, &line[done.0..done.1]);
            }
            push_member(out, start, &line[m.key_start - 1..m.key_end + 1]); // the quoted key
            out.push(b':');
            if v.compact {
                out.extend_from_slice(&line[s..e]);
            } else {
                json::write_compact(&line[s..e], out);
            }
        }
        if let Some(done) = run {
            push_member(out, start, &line[done.0..done.1]);
        }
        if out.len() == start + 1 {
            out.truncate(start);
            return false;
        }
        out.push(b'}');
        true
    }
}

/// Appends compact member text (or its start) to an object being written at `start`, comma
/// first if needed.
#[inline]
fn push_member(out: &mut Vec<u8>, start: usize, text: &[u8]) {
    if out.len() > start + 1 {
        out.push(b',');
    }
    out.extend_from_slice(text);
}

/// Length and first seven bytes of a key: equal keys have equal prints, and different keys
/// usually differ here, so most comparisons are one integer compare.
#[inline]
fn fingerprint(key: &[u8]) -> u64 {
    key.iter()
        .take(7)
        .enumerate()
        .fold(key.len() as u64 & 0xff, |acc, (i, &b)| {
            acc | u64::from(b) << (8 * (i + 1))
        })
}

/// [`fingerprint`] of `line[start..end]`, from one 8-byte load when the line is long enough.
#[inline]
fn fingerprint_in(line: &[u8], start: usize, end: usize) -> u64 {
    let Some(word) = line.get(start..start + 8) else {
        return fingerprint(&line[start..end]);
    };
    let len = end - start;
    let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
    let mask = (1u64 << (8 * len.min(7))) - 1;
    (word & mask) << 8 | (len as u64 & 0xff)
}

/// Whether two keys with equal [`fingerprint`]s are equal: the print already holds the first
/// seven bytes (and the length's low byte), so only longer keys have more to compare.
#[inline]
fn same_key(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0..=7 => true,
        // Field names are short: their last eight bytes (all past the seventh) as one compare.
        8..=15 => a[n - 8..] == b[n - 8..],
        _ => a[7..] == b[7..],
    }
}

/// A configured field name for messages (they come from Rust `String`s, so they are UTF-8).
fn field_name(name: &[u8]) -> &str {
    std::str::from_utf8(name).unwrap_or("?")
}

/// A required text field of the row: a span of the line, or its unescaped copy.
#[derive(Default)]
struct Text {
    span: Option<(usize, usize)>,
    unescaped: Vec<u8>,
}

impl Text {
    fn get<'a>(&'a self, line: &'a [u8]) -> &'a [u8] {
        match self.span {
            Some((start, end)) => &line[start..end],
            None => &self.unescaped,
        }
    }
}

/// Records a string value in `out` (unescaped only when it has escapes), or says why it is
/// not a usable non-empty text.
#[inline(always)]
fn non_empty_text(line: &[u8], v: Value, out: &mut Text, name: &[u8]) -> Option<String> {
    let empty = if v.escaped {
        out.span = None;
        out.unescaped.clear();
        if let Err(why) = json::unescape(&line[v.start..v.end], &mut out.unescaped) {
            return Some(format!("{} contains {why}", field_name(name)));
        }
        out.unescaped.is_empty()
    } else {
        out.span = Some((v.start, v.end));
        v.start == v.end
    };
    empty.then(|| format!("{} is an empty string", field_name(name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Row = (String, String, String, Option<String>);

    fn check(line: &str) -> Result<Row, (ErrorCode, String)> {
        let mut v = Validator::new(&FieldNames::default());
        v.check(line.as_bytes())
            .map_err(|e| (e.code, e.detail.clone()))?;
        let mut extra = Vec::new();
        let has = v.write_extra(line.as_bytes(), &mut extra);
        let ts = timestamp::Instant { micros: v.micros() }.format();
        Ok((
            String::from_utf8(ts.to_vec()).unwrap(),
            String::from_utf8(v.user_id(line.as_bytes()).to_vec()).unwrap(),
            String::from_utf8(v.action(line.as_bytes()).to_vec()).unwrap(),
            has.then(|| String::from_utf8(extra).unwrap()),
        ))
    }

    fn code(line: &str) -> ErrorCode {
        check(line).unwrap_err().0
    }

    #[test]
    fn valid_rows() {
        let (ts, user, action, extra) = check(
            r#"{"timestamp":"2025-08-20T12:01:15+02:00","user_id":"u1","action":"login","ip":"1.2.3.4","n": [1, 2]}"#,
        )
        .unwrap();
        assert_eq!(ts, "2025-08-20 10:01:15");
        assert_eq!(user, "u1");
        assert_eq!(action, "login");
        assert_eq!(extra.as_deref(), Some(r#"{"ip":"1.2.3.4","n":[1,2]}"#));

        let row = check(r#"{"user\u005fid":42,"action":"a\"b","timestamp":1724155275}"#).unwrap();
        assert_eq!(
            (row.1.as_str(), row.2.as_str(), row.3),
            ("42", "a\"b", None)
        );
    }

    #[test]
    fn extra_copies_runs_and_compacts_the_rest() {
        let row = check(
            "{\"a\":1,\"timestamp\":0,\"b\":\"x y\",\"c\":{\"d\":[1]},\"user_id\":\"u\",\
             \"action\":\"x\", \"e\" :2,\"f\":[1, 2],\"g\":null ,\"h\":true,\"i\":\"\\u0041\"}",
        )
        .unwrap();
        assert_eq!(
            row.3.as_deref(),
            Some(
                r#"{"a":1,"b":"x y","c":{"d":[1]},"e":2,"f":[1,2],"g":null,"h":true,"i":"\u0041"}"#
            )
        );
    }

    #[test]
    fn duplicate_keys_last_wins() {
        let row = check(
            r#"{"timestamp":"x","user_id":"a","action":"b","k":1,"timestamp":0,"k":2,"user_id":"c"}"#,
        )
        .unwrap();
        assert_eq!(row.0, "1970-01-01 00:00:00");
        assert_eq!(row.1, "c");
        assert_eq!(row.3.as_deref(), Some(r#"{"k":2}"#));
        // an escaped duplicate is the same key
        let row = check(r#"{"timestamp":0,"user_id":"a","action":"b","k":1,"\u006b":2}"#).unwrap();
        assert_eq!(row.3.as_deref(), Some(r#"{"\u006b":2}"#));
    }

    #[test]
    fn keys_alike_in_their_first_bytes_stay_apart() {
        // 263 bytes: the same first seven bytes and length low byte as "user_id".
        let long = format!("user_id{}", "x".repeat(256));
        let line = format!(r#"{{"timestamp":0,"user_id":"a","action":"b","{long}":1}}"#);
        let row = check(&line).unwrap();
        assert_eq!(row.1, "a");
        assert_eq!(row.3, Some(format!(r#"{{"{long}":1}}"#)));
        // Many distinct keys (more than the 64 bits that pre-screen duplicates): all kept, in
        // order; one repeated among them: only its last occurrence kept.
        let keys: Vec<String> = (0..100).map(|i| format!("key{i:03}")).collect();
        let members: Vec<String> = keys.iter().map(|k| format!(r#""{k}":1"#)).collect();
        let line = format!(
            r#"{{"timestamp":0,"user_id":"a","action":"b",{}}}"#,
            members.join(",")
        );
        let row = check(&line).unwrap();
        assert_eq!(row.3, Some(format!("{{{}}}", members.join(","))));
        let line = format!(
            r#"{{"timestamp":0,"user_id":"a","action":"b",{},"key042":2}}"#,
            members.join(",")
        );
        let kept: Vec<&str> = members
            .iter()
            .filter(|m| !m.starts_with(r#""key042""#))
            .map(String::as_str)
            .collect();
        let row = check(&line).unwrap();
        assert_eq!(row.3, Some(format!(r#"{{{},"key042":2}}"#, kept.join(","))));
    }

    #[test]
    fn rules_in_order() {
        assert_eq!(code("{\"timestamp\":0,"), ErrorCode::InvalidJson);
        assert_eq!(code("[1,2]"), ErrorCode::NotAnObject);
        assert_eq!(code("\"x\""), ErrorCode::NotAnObject);
        assert_eq!(
            code(r#"{"timestamp":"bad","user_id":""}"#),
            ErrorCode::MissingField
        );
        assert_eq!(
            code(r#"{"timestamp":"bad","user_id":"","action":"x"}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code(r#"{"timestamp":"bad","user_id":"u","action":"x"}"#),
            ErrorCode::InvalidTimestamp
        );
        assert_eq!(
            code(r#"{"timestamp":true,"user_id":"u","action":"x"}"#),
            ErrorCode::InvalidTimestamp
        );
        assert_eq!(
            code(r#"{"timestamp":0,"user_id":1.5,"action":"x"}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code(r#"{"timestamp":0,"user_id":"u","action":7}"#),
            ErrorCode::InvalidField
        );
    }

    #[test]
    fn details_name_the_problem() {
        let (_, d) = check(r#"{"timestamp":null,"action":"x"}"#).unwrap_err();
        assert_eq!(
            d,
            "required field missing: timestamp is null, user_id is missing"
        );
        let (_, d) = check(r#"{"timestamp":0,"user_id":"","action":""}"#).unwrap_err();
        assert_eq!(d, "user_id is an empty string; action is an empty string");
        let (_, d) = check("{\"a\":1,}").unwrap_err();
        assert_eq!(d, "invalid JSON at column 8: trailing comma before '}'");
        let (_, d) = check(r#"{"timestamp":"2025-02-29T00:00:00Z","user_id":"u","action":"x"}"#)
            .unwrap_err();
        assert_eq!(
            d,
            "timestamp \"2025-02-29T00:00:00Z\" has an impossible day of month"
        );
    }

    #[test]
    fn invalid_utf8_is_invalid_json() {
        let mut v = Validator::new(&FieldNames::default());
        let e = v.check(b"{\"a\":\"\xff\"}").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidJson);
        assert!(e.detail.contains("offset 6"), "{}", e.detail);
    }
}
