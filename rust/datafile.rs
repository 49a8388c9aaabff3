//! Writing the clean table's Parquet data files, each row group's columns encoded in parallel.
//!
//! Encoding is the longest step of an ingest: zstd over `extra` (most of the bytes) and the
//! other columns together took one writer thread longer than the core took to parse the input on
//! two. A row group's column chunks are independent until they are laid out in the file, so each
//! column is encoded and compressed on the rayon pool and the chunks are appended in order.
//! The settings are the table's (`logsieve.storage.datafiles`): zstd level 1, data page v2,
//! dictionaries and min/max statistics only for the columns named.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowSchemaConverter;
use parquet::arrow::add_encoded_arrow_schema_to_metadata;
use parquet::arrow::arrow_writer::{ArrowColumnChunk, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::statistics::Statistics;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;
use rayon::prelude::*;

use crate::errors::CoreError;

/// Which columns get a dictionary and which get min/max statistics (top-level names).
pub struct FileOptions {
    pub dictionary: Vec<String>,
    pub statistics: Vec<String>,
}

/// A column's extreme value as the footer holds it: an integer (timestamps: microseconds) or
/// bytes (text).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Extreme {
    Int(i64),
    Bytes(Vec<u8>),
}

/// What the file holds of one column, over every row group written: the statistics a table's
/// add action carries, taken from the encoder's own (no second pass over the rows).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ColumnSummary {
    pub nulls: u64,
    /// Smallest and largest non-null value; only for columns with statistics.
    pub min: Option<Extreme>,
    pub max: Option<Extreme>,
}

/// One Parquet file being written, row group by row group.
pub struct DataFile {
    writer: SerializedFileWriter<BufWriter<File>>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    columns: Vec<ColumnSummary>,
}

impl DataFile {
    /// Creates the file at `path` (truncating it) for rows of `schema`.
    pub fn create(
        path: &Path,
        schema: SchemaRef,
        options: &FileOptions,
    ) -> Result<Self, CoreError> {
        // One column writer per field: a nested field would have several leaves.
        if let Some(nested) = schema.fields().iter().find(|f| f.data_type().is_nested()) {
            return Err(CoreError::Config(format!(
                "data files hold flat columns; {:?} is {}",
                nested.name(),
                nested.data_type()
            )));
        }
        for name in options.dictionary.iter().chain(&options.statistics) {
            if schema.field_with_name(name).is_err() {
                return Err(CoreError::Config(format!(
                    "the data file's schema has no column {name:?}"
                )));
            }
        }
        let mut props = properties(options);
        add_encoded_arrow_schema_to_metadata(&schema, &mut props);
        let parquet_schema = ArrowSchemaConverter::new()
            .convert(&schema)
            .map_err(parquet_error)?;
        let file = File::create(path)?;
        let writer = SerializedFileWriter::new(
            BufWriter::with_capacity(1 << 20, file),
            parquet_schema.root_schema_ptr(),
            Arc::new(props),
        )
        .map_err(parquet_error)?;
        let factory = ArrowRowGroupWriterFactory::new(&writer, Arc::clone(&schema));
        let columns = vec![ColumnSummary::default(); schema.fields().len()];
        Ok(Self {
            writer,
            factory,
            schema,
            columns,
        })
    }

    /// Appends `batches` as row groups of at most `row_group_rows` rows. Rows the file cannot
    /// take (another schema, nulls in a column that has none) are refused before anything is
    /// written; after any other error the file is incomplete and must not be written again.
    pub fn write(
        &mut self,
        batches: &[RecordBatch],
        row_group_rows: usize,
    ) -> Result<(), CoreError> {
        for batch in batches {
            if batch.schema().fields() != self.schema.fields() {
                return Err(CoreError::Config(format!(
                    "rows of another schema than the data file's: {} against {}",
                    batch.schema(),
                    self.schema
                )));
            }
            for (field, column) in self.schema.fields().iter().zip(batch.columns()) {
                if !field.is_nullable() && column.null_count() > 0 {
                    return Err(CoreError::Config(format!(
                        "column {:?} has no nulls in the data file's schema, but the rows hold {}",
                        field.name(),
                        column.null_count()
                    )));
                }
            }
        }
        for group in row_groups(batches, row_group_rows.max(1)) {
            self.write_row_group(&group)?;
        }
        Ok(())
    }

    fn write_row_group(&mut self, slices: &[RecordBatch]) -> Result<(), CoreError> {
        let writers = self
            .factory
            .create_column_writers(self.writer.flushed_row_groups().len())
            .map_err(parquet_error)?;
        let fields = self.schema.fields();
        // The columns are flat (`create`), so writer i is column i's.
        let chunks: Vec<ArrowColumnChunk> = writers
            .into_par_iter()
            .enumerate()
            .map(|(i, mut writer)| {
                for slice in slices {
                    for leaf in compute_leaves(&fields[i], slice.column(i))? {
                        writer.write(&leaf)?;
                    }
                }
                writer.close()
            })
            .collect::<Result<_, ParquetError>>()
            .map_err(parquet_error)?;
        // The summaries count once the row group is in the file.
        let mut columns = self.columns.clone();
        for (i, chunk) in chunks.iter().enumerate() {
            let summary = &mut columns[i];
            summary.nulls += slices
                .iter()
                .map(|s| s.column(i).null_count() as u64)
                .sum::<u64>();
            if let Some(stats) = chunk.close().metadata.statistics() {
                summary.add(stats);
            }
        }
        let mut group = self.writer.next_row_group().map_err(parquet_error)?;
        for chunk in chunks {
            chunk
                .append_to_row_group(&mut group)
                .map_err(parquet_error)?;
        }
        group.close().map_err(parquet_error)?;
        self.columns = columns;
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        let groups = self.writer.flushed_row_groups();
        groups.iter().map(|g| g.num_rows() as u64).sum()
    }

    /// Each column's summary, in the schema's order, over the row groups written so far.
    pub fn columns(&self) -> &[ColumnSummary] {
        &self.columns
    }

    /// Bytes in the file so far (row groups written, the footer not yet).
    pub fn bytes_written(&self) -> usize {
        self.writer.bytes_written()
    }

    /// Writes the footer and closes the file.
    pub fn close(self) -> Result<(), CoreError> {
        let mut out = self.writer.into_inner().map_err(parquet_error)?;
        std::io::Write::flush(&mut out)?;
        Ok(())
    }
}

impl ColumnSummary {
    fn add(&mut self, stats: &Statistics) {
        let (min, max) = match stats {
            Statistics::Int64(s) => (
                s.min_opt().map(|v| Extreme::Int(*v)),
                s.max_opt().map(|v| Extreme::Int(*v)),
            ),
            Statistics::ByteArray(s) => (
                s.min_opt().map(|v| Extreme::Bytes(v.data().to_vec())),
                s.max_opt().map(|v| Extreme::Bytes(v.data().to_vec())),
            ),
            _ => (None, None), // the table's columns with statistics are text and instants
        };
        keep(&mut self.min, min, Extreme::min);
        keep(&mut self.max, max, Extreme::max);
    }
}

/// `slot` becomes `pick` of itself and `new`, or `new` where it was empty.
fn keep(slot: &mut Option<Extreme>, new: Option<Extreme>, pick: fn(Extreme, Extreme) -> Extreme) {
    if let Some(new) = new {
        *slot = Some(match slot.take() {
            Some(old) => pick(old, new),
            None => new,
        });
    }
}

fn properties(options: &FileOptions) -> WriterProperties {
    let zstd = ZstdLevel::try_new(1).expect("zstd level 1 exists");
    let mut builder = WriterProperties::builder()
        // Version 2 pages compress the values alone: a very long value is not copied once more
        // together with its levels.
        .set_writer_version(WriterVersion::PARQUET_2_0)
        .set_compression(Compression::ZSTD(zstd))
        .set_dictionary_enabled(false)
        // Plain values: with version 2 the crate's default for text is DELTA_BYTE_ARRAY, slower
        // to write and not read by every engine that reads the table.
        .set_encoding(Encoding::PLAIN)
        .set_statistics_enabled(EnabledStatistics::None)
        // Readers prune by the footer's min/max, and the table's statistics are made of them:
        // whole values, not the crate's default of 64 bytes.
        .set_statistics_truncate_length(None)
        // `created_by` stays the crate's ("parquet-rs version ..."): some readers, parquet-mr
        // among them, judge a file's statistics by a writer string they can parse.
        .set_offset_index_disabled(true);
    for name in &options.dictionary {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(name.as_str()), true);
    }
    for name in &options.statistics {
        builder = builder.set_column_statistics_enabled(
            ColumnPath::from(name.as_str()),
            EnabledStatistics::Chunk,
        );
    }
    builder.build()
}

/// `batches` cut into row groups of at most `limit` rows (zero-copy slices).
fn row_groups(batches: &[RecordBatch], limit: usize) -> Vec<Vec<RecordBatch>> {
    let mut groups = Vec::new();
    let mut group: Vec<RecordBatch> = Vec::new();
    let mut rows = 0;
    for batch in batches {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let take = (limit - rows).min(batch.num_rows() - offset);
            group.push(batch.slice(offset, take));
            offset += take;
            rows += take;
            if rows == limit {
                groups.push(std::mem::take(&mut group));
                rows = 0;
            }
        }
    }
    if rows > 0 {
        groups.push(group);
    }
    groups
}

fn parquet_error(e: ParquetError) -> CoreError {
    match e {
        ParquetError::External(inner) => match inner.downcast::<std::io::Error>() {
            Ok(io) => CoreError::Output(*io),
            Err(other) => CoreError::Internal(format!("writing Parquet failed: {other}")),
        },
        other => CoreError::Internal(format!("writing Parquet failed: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Array, Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn batch(schema: &SchemaRef, from: i64, n: i64) -> RecordBatch {
        let ids = Int64Array::from_iter_values(from..from + n);
        let names = StringArray::from_iter_values((from..from + n).map(|i| format!("v{}", i % 3)));
        RecordBatch::try_new(Arc::clone(schema), vec![Arc::new(ids), Arc::new(names)]).unwrap()
    }

    #[test]
    fn rows_come_back_in_order_in_row_groups_of_the_limit() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let dir = std::env::temp_dir().join(format!("logsieve-datafile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.parquet");
        let options = FileOptions {
            dictionary: vec!["name".into()],
            statistics: vec!["id".into()],
        };
        let mut file = DataFile::create(&path, Arc::clone(&schema), &options).unwrap();
        file.write(&[batch(&schema, 0, 7), batch(&schema, 7, 5)], 5)
            .unwrap();
        file.write(&[batch(&schema, 12, 3)], 5).unwrap();
        file.close().unwrap();

        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        let groups: Vec<i64> = reader
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows())
            .collect();
        assert_eq!(groups, vec![5, 5, 2, 3]);
        let stats = reader
            .metadata()
            .row_group(1)
            .column(0)
            .statistics()
            .unwrap();
        assert!(stats.min_bytes_opt().is_some());
        assert!(
            reader
                .metadata()
                .row_group(1)
                .column(1)
                .statistics()
                .is_none()
        );
        let mut ids = Vec::new();
        for batch in reader.build().unwrap() {
            let batch = batch.unwrap();
            let column = batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            ids.extend(column.values().iter().copied());
        }
        assert_eq!(ids, (0..15).collect::<Vec<_>>());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_nested_column_is_refused_not_indexed_past() {
        let inner = Field::new("n", DataType::Int64, true);
        let schema = Arc::new(Schema::new(vec![Field::new(
            "s",
            DataType::Struct(vec![inner].into()),
            true,
        )]));
        let options = FileOptions {
            dictionary: vec![],
            statistics: vec![],
        };
        let path = std::env::temp_dir().join("logsieve-datafile-nested-never-created.parquet");
        let err = DataFile::create(&path, schema, &options).err().unwrap();
        assert!(err.to_string().contains("flat columns"), "{err}");
        assert!(!path.exists());
    }

    #[test]
    fn an_unknown_column_in_the_options_is_refused() {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let options = FileOptions {
            dictionary: vec!["nope".into()],
            statistics: vec![],
        };
        let path = std::env::temp_dir().join("logsieve-datafile-never-created.parquet");
        let err = DataFile::create(&path, schema, &options).err().unwrap();
        assert!(err.to_string().contains("nope"), "{err}");
        assert!(!path.exists());
    }
}
