//! Rows split by UTC date, the clean table's partitions. The date of a row is the first ten
//! bytes of its rendered `timestamp` (`YYYY-MM-DD HH:MM:SS`, always UTC).

use std::collections::HashMap;

use arrow_array::{Array, RecordBatch, StringArray, UInt32Array};
use arrow_select::take::take_record_batch;

use crate::errors::CoreError;

/// Bytes of `YYYY-MM-DD`.
const DATE_LEN: usize = 10;

/// Rows of one date in a row from which a run is handed over as a zero-copy slice. Logs are
/// nearly in time order: a batch holds long runs of one date, and around midnight a stretch
/// where jitter interleaves two dates in runs of a few rows, which is gathered per date instead
/// (copying only that stretch, not every column of the batch once per date).
pub const LONG_RUN: usize = 1024;

/// The rows of one date, in their order in the batch.
pub struct DatePart {
    pub date: String,
    pub rows: RecordBatch,
}

/// `batch`'s rows per date of its `column`, dates in the order they first appear; every row is
/// in exactly one part.
pub fn split_by_date(batch: &RecordBatch, column: &str) -> Result<Vec<DatePart>, CoreError> {
    let texts = text_column(batch, column)?;
    let mut parts = Vec::new();
    let mut mixed_from = 0; // start of the interleaved stretch not yet handed over
    let mut start = 0;
    while start < texts.len() {
        let date = date_of(texts, column, start)?;
        let mut end = start + 1;
        while end < texts.len() && texts.value(end).as_bytes().get(..DATE_LEN) == Some(date) {
            end += 1;
        }
        if end - start >= LONG_RUN {
            gather(batch, texts, column, mixed_from..start, &mut parts)?;
            parts.push(DatePart {
                date: text(date),
                rows: batch.slice(start, end - start),
            });
            mixed_from = end;
        }
        start = end;
    }
    gather(batch, texts, column, mixed_from..texts.len(), &mut parts)?;
    Ok(parts)
}

fn text_column<'a>(batch: &'a RecordBatch, column: &str) -> Result<&'a StringArray, CoreError> {
    let array = batch
        .column_by_name(column)
        .ok_or_else(|| CoreError::Config(format!("the rows have no column {column:?}")))?;
    let texts = array
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| {
            CoreError::Config(format!(
                "column {column:?} must be text to split rows by date, not {}",
                array.data_type()
            ))
        })?;
    if texts.null_count() > 0 {
        return Err(CoreError::Config(format!(
            "column {column:?} has nulls: every row needs a date"
        )));
    }
    Ok(texts)
}

/// The date of row `row`, refused unless the text starts with `YYYY-MM-DD`.
fn date_of<'a>(texts: &'a StringArray, column: &str, row: usize) -> Result<&'a [u8], CoreError> {
    let value = texts.value(row);
    match value.as_bytes().get(..DATE_LEN) {
        Some(date) if is_date(date) => Ok(date),
        _ => Err(CoreError::Config(format!(
            "row {row} of column {column:?} does not start with a YYYY-MM-DD date: {value:?}"
        ))),
    }
}

fn is_date(date: &[u8]) -> bool {
    date.iter().enumerate().all(|(i, b)| {
        if i == 4 || i == 7 {
            *b == b'-'
        } else {
            b.is_ascii_digit()
        }
    })
}

fn text(date: &[u8]) -> String {
    // `is_date` let through ASCII digits and dashes only.
    String::from_utf8_lossy(date).into_owned()
}

/// The rows of `range` (short runs of interleaved dates), one part per date.
fn gather(
    batch: &RecordBatch,
    texts: &StringArray,
    column: &str,
    range: std::ops::Range<usize>,
    parts: &mut Vec<DatePart>,
) -> Result<(), CoreError> {
    if range.is_empty() {
        return Ok(());
    }
    let mut order: Vec<&[u8]> = Vec::new();
    let mut rows: HashMap<&[u8], Vec<u32>> = HashMap::new();
    for row in range.clone() {
        let date = date_of(texts, column, row)?;
        let index = u32::try_from(row)
            .map_err(|_| CoreError::Internal(format!("row {row} beyond a batch's rows")))?;
        rows.entry(date)
            .or_insert_with(|| {
                order.push(date);
                Vec::new()
            })
            .push(index);
    }
    if let [date] = order[..] {
        // One date after all (a batch shorter than a long run, say): a slice, not a copy, which
        // for a batch holding one huge line is the difference between once and twice its size.
        parts.push(DatePart {
            date: text(date),
            rows: batch.slice(range.start, range.len()),
        });
        return Ok(());
    }
    for date in order {
        let indices = UInt32Array::from(rows.remove(date).unwrap_or_default());
        parts.push(DatePart {
            date: text(date),
            rows: take_record_batch(batch, &indices)?,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::Int64Array;
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    fn rows(dates: &[&str]) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("timestamp", DataType::Utf8, false),
            Field::new("n", DataType::Int64, false),
        ]);
        let stamps: Vec<String> = dates.iter().map(|d| format!("{d} 12:00:00")).collect();
        let numbers: Vec<i64> = (0..dates.len() as i64).collect();
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(stamps)),
                Arc::new(Int64Array::from(numbers)),
            ],
        )
        .unwrap()
    }

    fn numbers(part: &DatePart) -> Vec<i64> {
        let column = part.rows.column(1).as_any().downcast_ref::<Int64Array>();
        column.unwrap().values().to_vec()
    }

    #[test]
    fn long_runs_are_slices_and_short_ones_gathered_per_date() {
        let mut dates = vec!["2025-08-19"; LONG_RUN];
        dates.extend(["2025-08-19", "2025-08-20", "2025-08-19", "2025-08-20"]);
        dates.extend(vec!["2025-08-20"; LONG_RUN]);
        let batch = rows(&dates);
        let parts = split_by_date(&batch, "timestamp").unwrap();
        let summary: Vec<(&str, usize)> = parts
            .iter()
            .map(|p| (p.date.as_str(), p.rows.num_rows()))
            .collect();
        // The first long run takes the next row of its date too; 2 of the 3 left interleave.
        assert_eq!(
            summary,
            [
                ("2025-08-19", LONG_RUN + 1),
                ("2025-08-20", 1),
                ("2025-08-19", 1),
                ("2025-08-20", LONG_RUN + 1),
            ]
        );
        let n = LONG_RUN as i64;
        assert_eq!(numbers(&parts[1]), [n + 1]);
        assert_eq!(numbers(&parts[2]), [n + 2]);
        // A slice shares the batch's buffers.
        let first = parts[0].rows.column(1).to_data();
        assert_eq!(
            first.buffers()[0].as_ptr(),
            batch.column(1).to_data().buffers()[0].as_ptr()
        );
    }

    #[test]
    fn interleaved_rows_keep_their_order_within_each_date() {
        let parts = split_by_date(
            &rows(&["2025-08-20", "2025-08-19", "2025-08-20"]),
            "timestamp",
        );
        let parts = parts.unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            (parts[0].date.as_str(), numbers(&parts[0])),
            ("2025-08-20", vec![0, 2])
        );
        assert_eq!(
            (parts[1].date.as_str(), numbers(&parts[1])),
            ("2025-08-19", vec![1])
        );
    }

    #[test]
    fn a_short_batch_of_one_date_is_a_slice_not_a_copy() {
        let batch = rows(&["2025-08-19"; 3]);
        let parts = split_by_date(&batch, "timestamp").unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].rows.num_rows(), 3);
        let values = |b: &RecordBatch| b.column(0).to_data().buffers()[1].as_ptr();
        assert_eq!(values(&parts[0].rows), values(&batch));
    }

    #[test]
    fn no_rows_no_parts() {
        assert!(split_by_date(&rows(&[]), "timestamp").unwrap().is_empty());
    }

    #[test]
    fn text_that_is_not_a_date_is_refused() {
        for bad in ["2025-8-19 1", "short", "2025/08/19"] {
            let batch = RecordBatch::try_new(
                Arc::new(Schema::new(vec![Field::new("t", DataType::Utf8, false)])),
                vec![Arc::new(StringArray::from(vec![bad]))],
            )
            .unwrap();
            let err = split_by_date(&batch, "t").err().unwrap().to_string();
            assert!(
                err.contains("does not start with a YYYY-MM-DD date"),
                "{err}"
            );
        }
        let err = split_by_date(&rows(&["2025-08-19"]), "n").err().unwrap();
        assert!(err.to_string().contains("must be text"), "{err}");
        let err = split_by_date(&rows(&["2025-08-19"]), "nope").err().unwrap();
        assert!(err.to_string().contains("no column"), "{err}");
    }
}
