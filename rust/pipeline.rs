//! The pure-Rust entry point: bytes of JSON Lines in, clean and error batches out.
//!
//! Large inputs are cut at line ends and the pieces validated in parallel with rayon; the
//! pieces' outputs are stitched back in input order, line numbers rebased.

use std::panic::{AssertUnwindSafe, catch_unwind};

use arrow_array::RecordBatch;

use crate::columns::{CleanColumns, ErrorColumns};
use crate::errors::CoreError;
use crate::lines::{BOM, Utf8Scan, for_each_line, is_blank, split_at_newlines};
use crate::memory::BIG_CALL;
use crate::merge::place_pieces;
use crate::record::{FieldNames, Validator};
use crate::timestamp::{DateCache, Instant};

/// Inputs smaller than this are processed on the calling thread.
const PARALLEL_THRESHOLD: usize = 1 << 20;
/// Bytes per piece of a parallel run: big enough that per-piece set-up is negligible, small
/// enough that a piece's output stays in its core's cache until it is copied into place.
const PIECE: usize = 256 << 10;
/// The output of a parallel run is reserved from its first piece's rows, scaled to the whole
/// input, with this margin. Stretches of input that need more are appended after the run.
const ROOM_MARGIN: f64 = 1.25;
/// Largest input of one call: output columns use Arrow's 32-bit offsets.
pub const MAX_INPUT: usize = i32::MAX as usize;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Non-blank lines, each of which became a row or an error.
    pub processed: u64,
    pub valid: u64,
    pub errors: u64,
    pub blank: u64,
    pub bytes: u64,
}

impl Stats {
    fn add(&mut self, other: &Stats) {
        self.processed += other.processed;
        self.valid += other.valid;
        self.errors += other.errors;
        self.blank += other.blank;
    }
}

pub struct Output {
    pub clean: RecordBatch,
    pub errors: RecordBatch,
    pub stats: Stats,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub fields: FieldNames,
    /// Line number of the first line of `data`; a BOM is only stripped when this is 1.
    pub first_line: i64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            fields: FieldNames::default(),
            first_line: 1,
        }
    }
}

impl Options {
    pub fn validate(&self) -> Result<(), CoreError> {
        let f = &self.fields;
        for (what, name) in [
            ("timestamp_field", &f.timestamp),
            ("user_id_field", &f.user_id),
            ("action_field", &f.action),
        ] {
            if name.is_empty() {
                return Err(CoreError::Config(format!("{what} must not be empty")));
            }
        }
        if f.timestamp == f.user_id || f.timestamp == f.action || f.user_id == f.action {
            return Err(CoreError::Config(format!(
                "the three field names must differ, got timestamp_field={:?}, \
                 user_id_field={:?}, action_field={:?}",
                f.timestamp, f.user_id, f.action
            )));
        }
        if self.first_line < 1 {
            return Err(CoreError::Config(format!(
                "first_line must be at least 1, got {}",
                self.first_line
            )));
        }
        Ok(())
    }

    /// Refuses a `first_line` from which the numbers of `bytes` bytes of lines could pass
    /// `i64::MAX`: a line takes at least one byte, so the last one is at most
    /// `first_line + bytes - 1`, and a number past the end would silently wrap negative.
    fn check_line_numbers(&self, bytes: usize) -> Result<(), CoreError> {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        if (self.first_line - 1).checked_add(bytes).is_none() {
            return Err(CoreError::Config(format!(
                "first_line {} is too large for {bytes} bytes of input: its line numbers could \
                 pass 2**63 - 1 (first_line + len(data) - 1 must be at most 2**63 - 1)",
                self.first_line
            )));
        }
        Ok(())
    }
}

/// Processes whole lines of JSON; a panic anywhere inside becomes [`CoreError::Internal`].
pub fn process(data: &[u8], options: &Options) -> Result<Output, CoreError> {
    options.validate()?;
    options.check_line_numbers(data.len())?;
    if data.len() > MAX_INPUT {
        return Err(CoreError::InputTooLarge {
            what: "the input",
            bytes: data.len(),
        });
    }
    catch_unwind(AssertUnwindSafe(|| process_unchecked(data, options))).unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        Err(CoreError::Internal(msg))
    })
}

/// What a piece leaves besides its clean rows.
#[derive(Default)]
struct PieceRest {
    errors: ErrorColumns,
    stats: Stats,
    lines: i64,
}

fn process_unchecked(data: &[u8], options: &Options) -> Result<Output, CoreError> {
    let body = match data.strip_prefix(BOM) {
        Some(rest) if options.first_line == 1 => rest,
        _ => data,
    };
    let threads = rayon::current_num_threads();
    let big = body.len() >= BIG_CALL;
    let pieces = (body.len() >= PARALLEL_THRESHOLD && threads > 1)
        .then(|| split_at_newlines(body, PIECE))
        .filter(|pieces| worth_splitting(pieces, body.len()));
    let (clean, rests) = if let Some(pieces) = pieces {
        let sample = pieces[0].len();
        let room = |first: &CleanColumns| {
            let room = room_for(first, sample, body.len());
            if big {
                room.advise_huge_pages();
            }
            room
        };
        run_pieces(&pieces, &options.fields, threads, room)
    } else {
        let mut clean = CleanColumns::with_capacity(rows_estimate(body.len()), body.len());
        if big {
            clean.advise_huge_pages();
        }
        let rest = run_piece(body, &options.fields, &mut clean);
        (clean, vec![rest])
    };

    let (errors, mut stats) = join_rests(rests, options.first_line);
    stats.bytes = data.len() as u64;
    Ok(Output {
        clean: clean.finish()?,
        errors: errors.finish()?,
        stats,
    })
}

/// Whether `pieces` of `total` bytes are worth validating in parallel: not when one of them
/// holds half the input or more (a very long line). Parallel work would save at most half the
/// time, and that piece's output would be written twice, into a worker's scratch and then to
/// its place (or merged, for error records), which for a 300 MB line is 300 MB more at the peak.
fn worth_splitting(pieces: &[&[u8]], total: usize) -> bool {
    pieces.iter().all(|piece| piece.len() < total.div_ceil(2))
}

/// The pieces' error records as one set, their line numbers counted from `first_line` (each
/// piece counts from 1), and their stats summed.
fn join_rests(mut rests: Vec<PieceRest>, first_line: i64) -> (ErrorColumns, Stats) {
    let mut stats = Stats::default();
    let mut base = first_line - 1;
    for rest in &mut rests {
        for line in &mut rest.errors.line {
            *line += base;
        }
        base += rest.lines;
        stats.add(&rest.stats);
    }
    let errors = match rests.as_mut_slice() {
        [one] => std::mem::take(&mut one.errors),
        _ => ErrorColumns::merge(&rests.iter().map(|r| &r.errors).collect::<Vec<_>>()),
    };
    (errors, stats)
}

/// Rows a piece of `bytes` bytes is expected to hold (a guess: its columns grow if it is short).
fn rows_estimate(bytes: usize) -> usize {
    bytes / 160 + 16
}

/// Room for the rows of `total` bytes of input, judged from `first`, the rows of its first
/// `sample` bytes. Only address space until written; but the room is kept (and, once reused,
/// resident) as long as the batch lives, so it is sized to fit, not to a worst case.
fn room_for(first: &CleanColumns, sample: usize, total: usize) -> CleanColumns {
    let scale = total as f64 / sample.max(1) as f64 * ROOM_MARGIN;
    CleanColumns::with_room(&first.cursor().map(|n| (n as f64 * scale) as usize + 64))
}

/// Validates `pieces` on `threads` workers, the clean rows going straight into the columns
/// `reserve` makes from the first piece's rows.
fn run_pieces(
    pieces: &[&[u8]],
    fields: &FieldNames,
    threads: usize,
    reserve: impl Fn(&CleanColumns) -> CleanColumns + Sync,
) -> (CleanColumns, Vec<PieceRest>) {
    let scratch = || CleanColumns::with_capacity(rows_estimate(PIECE * 2), PIECE * 2);
    place_pieces(pieces, threads, reserve, scratch, |piece, clean| {
        run_piece(piece, fields, clean)
    })
}

/// Validates every line of `data`, appending its valid rows to `clean`.
fn run_piece(data: &[u8], fields: &FieldNames, clean: &mut CleanColumns) -> PieceRest {
    let mut errors = ErrorColumns::default();
    let mut validator = Validator::new(fields);
    let mut stats = Stats::default();
    let mut lines = 0i64;
    let mut utf8 = Utf8Scan::new(data);
    let mut dates = DateCache::default();
    for_each_line(data, |line| {
        lines += 1;
        if is_blank(line) {
            stats.blank += 1;
            return;
        }
        stats.processed += 1;
        let checked = if utf8.is_valid(line) {
            validator.check_utf8(line)
        } else {
            validator.check(line)
        };
        match checked {
            Ok(()) => {
                stats.valid += 1;
                let instant = Instant {
                    micros: validator.micros(),
                };
                let (text, weekday) = dates.format(instant);
                clean.push_instant(instant, &text, weekday);
                clean.user_id.push(validator.user_id(line));
                clean.action.push(validator.action(line));
                let present = validator.write_extra(line, &mut clean.extra.values);
                clean.end_extra(present);
            }
            Err(e) => {
                stats.errors += 1;
                errors.push(lines, e.code.as_str(), &e.detail, line);
            }
        }
    });
    PieceRest {
        errors,
        stats,
        lines,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Array, Int64Array, StringArray};

    fn run(data: &[u8]) -> Output {
        process(data, &Options::default()).unwrap()
    }

    #[test]
    fn counts_and_line_numbers() {
        let data = b"\xEF\xBB\xBF{\"timestamp\":0,\"user_id\":1,\"action\":\"a\"}\r\n\n  \t\nnot json\n[1]";
        let out = run(data);
        assert_eq!(
            out.stats,
            Stats {
                processed: 3,
                valid: 1,
                errors: 2,
                blank: 2,
                bytes: data.len() as u64
            }
        );
        let lines = out
            .errors
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(lines.values().to_vec(), vec![4, 5]);
    }

    /// `n` lines, every 13th invalid, with a line number and a unicode member in `extra`.
    fn numbered(n: usize, pad: &str) -> Vec<u8> {
        let mut data = Vec::new();
        for i in 0..n {
            let line = if i % 13 == 0 {
                format!("{{\"timestamp\":{i},\"user_id\":\"\"}}\n")
            } else {
                format!(
                    "{{\"timestamp\":{i},\"user_id\":{i},\"action\":\"a{pad}\",\"n\":\"é{i}\"}}\n"
                )
            };
            data.extend_from_slice(line.as_bytes());
        }
        data
    }

    /// The whole input as one piece on this thread: what every parallel run must equal.
    fn sequential(data: &[u8]) -> (RecordBatch, RecordBatch) {
        let mut clean = CleanColumns::with_capacity(0, 0);
        let rest = run_piece(data, &FieldNames::default(), &mut clean);
        (clean.finish().unwrap(), rest.errors.finish().unwrap())
    }

    #[test]
    fn pieces_placed_in_order_equal_one_piece() {
        let data = numbered(40_000, "");
        let pieces = split_at_newlines(&data, 4096);
        let (want_clean, want_errors) = sequential(&data);
        // Room for everything; for a few pieces (the rest set aside); for nothing.
        for (rows, bytes) in [(40_000, data.len()), (200, 16_384), (0, 0)] {
            for threads in [1, 2, 3] {
                let room = |_: &CleanColumns| CleanColumns::with_capacity(rows, bytes);
                let (clean, rests) = run_pieces(&pieces, &FieldNames::default(), threads, room);
                assert_eq!(
                    clean.finish().unwrap(),
                    want_clean,
                    "{rows} rows, {threads} threads"
                );
                let lines: i64 = rests.iter().map(|r| r.lines).sum();
                assert_eq!(lines, 40_000);
                let errors = join_rests(rests, 1).0.line;
                let want = want_errors
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap();
                assert_eq!(errors, want.values().to_vec());
            }
        }
    }

    #[test]
    fn longer_lines_later_outgrow_the_reserved_room() {
        // The room is judged from the first piece: short lines there, longer ones later, so
        // the room runs out part way and the remaining pieces are appended after the run.
        let mut data = numbered(20_000, "");
        data.extend(numbered(20_000, &"x".repeat(100)));
        assert!(data.len() > PARALLEL_THRESHOLD);
        let out = run(&data);
        assert_eq!((out.clean, out.errors), sequential(&data));
        // The same lines throughout fit.
        let data = numbered(40_000, "");
        let out = run(&data);
        assert_eq!((out.clean, out.errors), sequential(&data));
    }

    #[test]
    fn parallel_matches_sequential() {
        let mut data = Vec::new();
        for i in 0..60_000 {
            if i % 17 == 0 {
                data.extend_from_slice(format!("bad {i}\n").as_bytes());
            } else {
                data.extend_from_slice(
                    format!("{{\"timestamp\":{i},\"user_id\":\"u{i}\",\"action\":\"login\",\"i\":{i}}}\n")
                        .as_bytes(),
                );
            }
        }
        assert!(data.len() > PARALLEL_THRESHOLD);
        let whole = run(&data);
        assert_eq!(whole.stats.errors, 60_000 / 17 + 1);
        let lines = whole
            .errors
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert!(
            lines
                .values()
                .iter()
                .enumerate()
                .all(|(k, &l)| l == (k as i64) * 17 + 1)
        );
        let users = whole
            .clean
            .column(3)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(users.value(0), "u1");
        assert_eq!(users.value(users.len() - 1), "u59999");
        let extra = whole
            .clean
            .column(5)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(extra.value(1), "{\"i\":2}");
    }

    #[test]
    fn bom_only_at_the_start() {
        let line = b"\xEF\xBB\xBF{\"timestamp\":0,\"user_id\":1,\"action\":\"a\"}\n";
        assert_eq!(run(line).stats.valid, 1);
        let later = process(
            line,
            &Options {
                first_line: 2,
                ..Options::default()
            },
        )
        .unwrap();
        assert_eq!(later.stats.errors, 1);
    }

    #[test]
    fn one_long_line_is_not_split_for_parallel_work() {
        let short = numbered(2_000, "");
        let long = numbered(1, &"y".repeat(4 * PARALLEL_THRESHOLD));
        let data = [short.as_slice(), &long, &short].concat();
        let pieces = split_at_newlines(&data, PIECE);
        assert!(!worth_splitting(&pieces, data.len()));
        assert!(worth_splitting(
            &split_at_newlines(&short.repeat(20), PIECE),
            20 * short.len()
        ));
        let out = run(&data);
        assert_eq!((out.clean, out.errors), sequential(&data));
    }

    #[test]
    fn refuses_line_numbers_that_would_wrap() {
        let at = |first_line| Options {
            first_line,
            ..Options::default()
        };
        let line = b"x\n";
        let last = process(line, &at(i64::MAX - 1)).unwrap();
        let lines = last.errors.column(0).as_any().downcast_ref::<Int64Array>();
        assert_eq!(lines.unwrap().values().to_vec(), vec![i64::MAX - 1]);
        assert!(process(b"x", &at(i64::MAX)).is_ok());
        assert!(matches!(
            process(line, &at(i64::MAX)),
            Err(CoreError::Config(m)) if m.starts_with("first_line 9223372036854775807 is too large")
        ));
        assert!(process(b"", &at(i64::MAX)).is_ok());
    }

    #[test]
    fn rejects_bad_options() {
        let mut o = Options::default();
        o.fields.action = "user_id".into();
        assert!(matches!(process(b"", &o), Err(CoreError::Config(_))));
        o.fields.action = String::new();
        assert!(matches!(process(b"", &o), Err(CoreError::Config(_))));
    }
}
