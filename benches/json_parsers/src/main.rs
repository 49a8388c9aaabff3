//! logsieve's scanner (`rust/json.rs`, compiled here as is) against sonic-rs, simd-json and
//! serde_json, one line at a time on one thread: what each costs to decide whether a log line is
//! a valid JSON object, and to find its top-level members where the API offers that.
//!
//! Only the JSON step is compared; the rest of logsieve's core (contract checks, timestamps,
//! Arrow columns) is not in these numbers. Every row counts the lines its parser accepts, so
//! that the rows can be seen to agree (serde's `IgnoredAny` skips strings without checking their
//! UTF-8, so it accepts a few more lines of a corpus with invalid bytes). `rust/json.rs` expects
//! checked UTF-8 (the core checks whole pieces of input at once); here it checks each line first.

#[allow(dead_code)]
#[path = "../../../rust/json.rs"]
mod logsieve_json;

use std::time::Instant;

use logsieve_json::Kind;
use serde::de::IgnoredAny;
use sonic_rs::JsonValueTrait as _;

const ROUNDS: usize = 5;

type Line<'a> = &'a [u8];

/// A parser's run over every line: returns how many lines it accepted.
type Run<'a> = Box<dyn FnMut() -> usize + 'a>;

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: json_parsers CORPUS.jsonl");
        std::process::exit(2);
    };
    let data = match std::fs::read(&path) {
        Ok(data) => data,
        Err(e) => {
            eprintln!("json_parsers: {path}: {e}");
            std::process::exit(1);
        }
    };
    let lines: Vec<Line> = data
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let lines = &lines;
    let mut members = Vec::new();
    let mut scratch = Vec::new();
    let mut buffers = simd_json::Buffers::default();
    let mut runs: Vec<(&str, Run)> = vec![
        (
            "logsieve json::parse_line: member spans",
            Box::new(move || {
                let mut valid = |l: &Line| {
                    simdutf8::basic::from_utf8(l).is_ok()
                        && logsieve_json::parse_line(l, &mut members) == Ok(Kind::Object)
                };
                lines.iter().filter(|l| valid(l)).count()
            }),
        ),
        (
            "sonic-rs to_object_iter: members, raw values",
            Box::new(|| {
                let valid = |l: &Line| {
                    sonic_rs::to_object_iter(*l)
                        .all(|m| m.is_ok_and(|(_, v)| !v.as_raw_str().is_empty()))
                };
                lines.iter().filter(|l| valid(l)).count()
            }),
        ),
        (
            "sonic-rs from_slice::<IgnoredAny>: validate",
            Box::new(|| {
                let valid = |l: &Line| sonic_rs::from_slice::<IgnoredAny>(l).is_ok();
                lines.iter().filter(|l| valid(l)).count()
            }),
        ),
        (
            "sonic-rs from_slice::<Value>: DOM",
            Box::new(|| {
                let valid = |l: &Line| {
                    sonic_rs::from_slice::<sonic_rs::Value>(l).is_ok_and(|v| v.is_object())
                };
                lines.iter().filter(|l| valid(l)).count()
            }),
        ),
        (
            "simd-json to_tape: copy (it parses in place), tape",
            Box::new(move || {
                let mut valid = |l: &Line| {
                    scratch.clear();
                    scratch.extend_from_slice(l);
                    simd_json::to_tape_with_buffers(&mut scratch, &mut buffers).is_ok()
                };
                lines.iter().filter(|l| valid(l)).count()
            }),
        ),
        (
            "serde_json from_slice::<IgnoredAny>: validate",
            Box::new(|| {
                let valid = |l: &Line| serde_json::from_slice::<IgnoredAny>(l).is_ok();
                lines.iter().filter(|l| valid(l)).count()
            }),
        ),
    ];

    // Round by round, every parser once per round: drift of the machine between minutes then
    // touches all of them alike. Each keeps its best round.
    let mut best = vec![(f64::MAX, 0); runs.len()];
    for _ in 0..ROUNDS {
        for ((_, run), best) in runs.iter_mut().zip(&mut best) {
            let start = Instant::now();
            let accepted = run();
            *best = (best.0.min(start.elapsed().as_secs_f64()), accepted);
        }
    }

    let (n, bytes) = (lines.len(), data.len());
    println!("{path}: {n} lines, {bytes} bytes, best of {ROUNDS} interleaved rounds, one thread");
    println!(
        "{:52} {:>10} {:>11} {:>13} {:>9}",
        "", "time", "speed", "per line", "accepted"
    );
    for ((name, _), (seconds, accepted)) in runs.iter().zip(best) {
        println!(
            "{name:52} {:7.1} ms {:6.0} MB/s {:5.0} ns/line {accepted:>9}",
            seconds * 1e3,
            bytes as f64 / seconds / 1e6,
            seconds * 1e9 / n as f64
        );
    }
}
