//! Reading a few columns back from many small Parquet files at once.
//!
//! A day the pipeline fills one object at a time holds thousands of small data files, and a
//! reader starting cold must open every one. pyarrow spends 130-160 us of fixed cost on each
//! (footer, schema, reader set-up, Python objects); the `parquet` crate does the same work in a
//! fraction of that, on every core, without the GIL. Files this module cannot decode (another
//! codec, another column type) are reported, not guessed at: the caller reads them its own way.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Int32Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use bytes::Bytes;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::file::metadata::ParquetStatisticsPolicy;
use rayon::prelude::*;

use crate::errors::CoreError;

/// Rows per decoded batch at most. A small file's batch is sized to its rows: the reader
/// allocates a whole batch's buffers up front, which would cost more than decoding 40 rows.
const BATCH_ROWS: usize = 64 * 1024;

/// Where one file's bytes come from.
pub enum FileInput {
    /// A local path, read here (in parallel, without the GIL).
    Path(std::path::PathBuf),
    /// The file's bytes, fetched by the caller (from S3, say).
    Bytes(Bytes),
}

/// The requested columns of every file that could be read, and why the others could not.
pub struct Scan {
    /// `file` (the input's index, int32) followed by the requested columns, files in order.
    pub rows: RecordBatch,
    /// `(index, reason)` of each file left out of `rows`.
    pub failed: Vec<(usize, String)>,
}

/// Reads the columns of `wanted` (top-level names) of every file. A file whose columns have
/// other types than `wanted` gives (types as the Parquet schema says, writers' Arrow hints
/// aside) is reported as failed, whatever the other files hold: the caller reads it its way.
pub fn read_columns(files: Vec<FileInput>, wanted: &Schema) -> Result<Scan, CoreError> {
    if wanted.fields().is_empty() {
        return Err(CoreError::Config(
            "read_columns() needs at least one column".into(),
        ));
    }
    let columns: Vec<String> = wanted.fields().iter().map(|f| f.name().clone()).collect();
    let types: Vec<DataType> = wanted
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    let decoded: Vec<Result<Vec<ArrayRef>, String>> = files
        .into_par_iter()
        .map(|input| read_file(input, &columns))
        .collect();
    let mut failed = Vec::new();
    let mut kept: Vec<(usize, Vec<ArrayRef>)> = Vec::new();
    for (index, one) in decoded.into_iter().enumerate() {
        match one {
            Ok(arrays) if arrays.is_empty() => {} // no rows: nothing to keep
            Ok(arrays) if arrays.iter().map(|a| a.data_type()).eq(types.iter()) => {
                kept.push((index, arrays));
            }
            Ok(arrays) => {
                let found: Vec<String> = arrays.iter().map(|a| a.data_type().to_string()).collect();
                failed.push((index, format!("column types {found:?}, not {types:?}")));
            }
            Err(reason) => failed.push((index, reason)),
        }
    }
    let rows = concatenate(&kept, &columns, &types)?;
    Ok(Scan { rows, failed })
}

/// One file's requested columns, each as one array.
fn read_file(input: FileInput, columns: &[String]) -> Result<Vec<ArrayRef>, String> {
    let bytes = match input {
        FileInput::Bytes(bytes) => bytes,
        FileInput::Path(path) => Bytes::from(std::fs::read(&path).map_err(|e| e.to_string())?),
    };
    // Types as the Parquet schema gives them (strings as Utf8), not as a writer's Arrow hints
    // (Utf8View, LargeUtf8), so that files from different writers agree.
    // Nothing here prunes, so the footer's statistics are skipped rather than decoded.
    let options = ArrowReaderOptions::new()
        .with_skip_arrow_metadata(true)
        .with_column_stats_policy(ParquetStatisticsPolicy::SkipAll)
        .with_encoding_stats_policy(ParquetStatisticsPolicy::SkipAll)
        .with_size_stats_policy(ParquetStatisticsPolicy::SkipAll);
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(bytes, options)
        .map_err(|e| e.to_string())?;
    let roots = builder.parquet_schema().root_schema().get_fields();
    let mut indices = Vec::with_capacity(columns.len());
    for name in columns {
        let found = roots.iter().position(|field| field.name() == name);
        indices.push(found.ok_or_else(|| format!("no column {name:?}"))?);
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices.iter().copied());
    let rows = usize::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(rows.clamp(1, BATCH_ROWS))
        .build()
        .map_err(|e| e.to_string())?;
    let batches: Vec<RecordBatch> = reader
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let Some(first) = batches.first() else {
        return Ok(Vec::new()); // no row groups: nothing to add, whatever the types
    };
    // The projection keeps the file's column order; give the caller's.
    let schema = first.schema();
    let mut arrays = Vec::with_capacity(columns.len());
    for name in columns {
        let position = schema.index_of(name).map_err(|e| e.to_string())?;
        let parts: Vec<&dyn Array> = batches
            .iter()
            .map(|b| b.column(position).as_ref())
            .collect();
        arrays.push(arrow_select::concat::concat(&parts).map_err(|e| e.to_string())?);
    }
    Ok(arrays)
}

/// The kept files' arrays (each file with rows) as one batch, with the `file` column saying where each row came from.
fn concatenate(
    kept: &[(usize, Vec<ArrayRef>)],
    columns: &[String],
    types: &[DataType],
) -> Result<RecordBatch, CoreError> {
    let mut fields = vec![Field::new("file", DataType::Int32, false)];
    fields.extend(
        columns
            .iter()
            .zip(types)
            .map(|(name, t)| Field::new(name, t.clone(), true)),
    );
    let total: usize = kept.iter().map(|(_, arrays)| arrays[0].len()).sum();
    let mut file = Vec::with_capacity(total);
    for (index, arrays) in kept {
        let index = i32::try_from(*index)
            .map_err(|_| CoreError::Config("read_columns() takes at most 2**31 files".into()))?;
        file.extend(std::iter::repeat_n(index, arrays[0].len()));
    }
    let mut out: Vec<ArrayRef> = vec![Arc::new(Int32Array::from(file))];
    for column in 0..columns.len() {
        let parts: Vec<&dyn Array> = kept.iter().map(|(_, a)| a[column].as_ref()).collect();
        out.push(if parts.is_empty() {
            arrow_array::new_empty_array(&types[column])
        } else {
            arrow_select::concat::concat(&parts)?
        });
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), out)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::StringArray;
    use parquet::arrow::ArrowWriter;

    fn wanted(columns: &[(&str, DataType)]) -> Schema {
        Schema::new(
            columns
                .iter()
                .map(|(name, t)| Field::new(*name, t.clone(), true))
                .collect::<Vec<_>>(),
        )
    }

    fn file_with(actions: &[&str]) -> Bytes {
        let schema = Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Utf8, true),
            Field::new("action", DataType::Utf8, true),
        ]));
        let users: ArrayRef = Arc::new(StringArray::from(vec!["u"; actions.len()]));
        let action: ArrayRef = Arc::new(StringArray::from(actions.to_vec()));
        let batch = RecordBatch::try_new(schema.clone(), vec![users, action]).unwrap();
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, schema, None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        Bytes::from(out)
    }

    #[test]
    fn rows_keep_their_file_and_bad_files_are_reported() {
        let files = vec![
            FileInput::Bytes(file_with(&["login", "view"])),
            FileInput::Bytes(Bytes::from_static(b"not parquet")),
            FileInput::Bytes(file_with(&["logout"])),
        ];
        let scan = read_columns(files, &wanted(&[("action", DataType::Utf8)])).unwrap();
        let file: Vec<i32> = scan
            .rows
            .column(0)
            .as_any()
            .downcast_ref::<Int32Array>()
            .unwrap()
            .values()
            .to_vec();
        assert_eq!(file, [0, 0, 2]);
        let action = scan
            .rows
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(
            action.iter().flatten().collect::<Vec<_>>(),
            ["login", "view", "logout"]
        );
        assert_eq!(scan.failed.len(), 1);
        assert_eq!(scan.failed[0].0, 1);
    }

    #[test]
    fn a_file_of_other_types_fails_first_or_last() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "action",
            DataType::Int64,
            true,
        )]));
        let numbers: ArrayRef = Arc::new(arrow_array::Int64Array::from(vec![1, 2]));
        let batch = RecordBatch::try_new(schema.clone(), vec![numbers]).unwrap();
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, schema, None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let odd = Bytes::from(out);
        for files in [
            vec![odd.clone(), file_with(&["login"])],
            vec![file_with(&["login"]), odd.clone()],
        ] {
            let odd_at = files.iter().position(|f| *f == odd).unwrap();
            let inputs = files.into_iter().map(FileInput::Bytes).collect();
            let scan = read_columns(inputs, &wanted(&[("action", DataType::Utf8)])).unwrap();
            assert_eq!(scan.rows.num_rows(), 1);
            assert_eq!(scan.failed.len(), 1);
            assert_eq!(scan.failed[0].0, odd_at);
        }
    }

    #[test]
    fn a_missing_column_fails_that_file_only() {
        let files = vec![FileInput::Bytes(file_with(&["login"]))];
        let scan = read_columns(files, &wanted(&[("event_time", DataType::Int64)])).unwrap();
        assert_eq!(scan.rows.num_rows(), 0);
        assert_eq!(scan.failed, [(0, "no column \"event_time\"".to_string())]);
    }
}
