//! Arrow output: column buffers filled row by row, turned into record batches without copying.

use std::sync::{Arc, LazyLock};

use arrow_array::{
    ArrayRef, BinaryArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::errors::CoreError;
use crate::memory;
use crate::merge::{Cursor, par_concat, par_concat_offsets};
use crate::timestamp::Instant;

/// The clean rows' schema (record contract v1).
pub static CLEAN_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("timestamp", DataType::Utf8, false),
        Field::new("day_of_week", DataType::Utf8, false),
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("user_id", DataType::Utf8, false),
        Field::new("action", DataType::Utf8, false),
        Field::new("extra", DataType::Utf8, true),
    ]))
});

/// The error records' schema.
pub static ERROR_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("line", DataType::Int64, false),
        Field::new("error", DataType::Utf8, false),
        Field::new("detail", DataType::Utf8, false),
        Field::new("raw", DataType::Binary, false),
    ]))
});

/// A variable-length column: value bytes plus i32 offsets, as Arrow lays them out.
pub struct VarColumn {
    pub values: Vec<u8>,
    pub(crate) offsets: Vec<i32>,
}

impl Default for VarColumn {
    fn default() -> Self {
        Self::with_capacity(0, 0)
    }
}

impl VarColumn {
    pub fn with_capacity(rows: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        Self {
            values: Vec::with_capacity(bytes),
            offsets,
        }
    }

    #[inline]
    pub fn push(&mut self, value: &[u8]) {
        self.values.extend_from_slice(value);
        self.end_value();
    }

    /// Closes the value written directly into `values` since the last call.
    #[inline]
    pub fn end_value(&mut self) {
        // Wrap-around is caught in `buffers` before any array is built.
        self.offsets.push(self.values.len() as i32);
    }

    fn clear(&mut self) {
        self.values.clear();
        self.offsets.truncate(1);
    }

    /// One variable-length column of every part, laid end to end (see [`crate::merge`]).
    fn gather<P: Sync>(parts: &[P], field: impl Fn(&P) -> &VarColumn) -> Self {
        Self {
            values: gather(parts, |p| &field(p).values),
            offsets: par_concat_offsets(
                &parts
                    .iter()
                    .map(|p| field(p).offsets.as_slice())
                    .collect::<Vec<_>>(),
            ),
        }
    }

    fn buffers(self) -> Result<(OffsetBuffer<i32>, Buffer), CoreError> {
        if i32::try_from(self.values.len()).is_err() {
            return Err(CoreError::InputTooLarge {
                what: "a column of the output",
                bytes: self.values.len(),
            });
        }
        Ok((
            OffsetBuffer::new(ScalarBuffer::from(self.offsets)),
            Buffer::from_vec(self.values),
        ))
    }

    /// The values must be UTF-8 (checked in debug builds): every line is validated as UTF-8
    /// before any of its bytes is copied, and cuts only happen at ASCII JSON punctuation.
    fn into_strings(self, nulls: Option<NullBuffer>) -> Result<ArrayRef, CoreError> {
        let (offsets, values) = self.buffers()?;
        debug_assert!(std::str::from_utf8(values.as_slice()).is_ok());
        // SAFETY: offsets are monotonic by construction (`end_value` after each append), the
        // last one equals the values' length (checked to fit i32 in `buffers`), and the values
        // are UTF-8 as documented above.
        Ok(Arc::new(unsafe {
            StringArray::new_unchecked(offsets, values, nulls)
        }))
    }

    fn into_binary(self) -> Result<ArrayRef, CoreError> {
        let (offsets, values) = self.buffers()?;
        Ok(Arc::new(BinaryArray::try_new(offsets, values, None)?))
    }
}

/// One field of every part, concatenated in parallel.
fn gather<P: Sync, T: Copy + Send + Sync>(parts: &[P], field: impl Fn(&P) -> &Vec<T>) -> Vec<T> {
    par_concat(
        &parts
            .iter()
            .map(|p| field(p).as_slice())
            .collect::<Vec<_>>(),
    )
}

/// What a [`Cursor`] needs of each buffer of a [`CleanColumns`], whatever its element type.
pub(crate) trait Vector {
    fn len(&self) -> usize;
    fn capacity(&self) -> usize;
    /// Makes room for `end` elements in all.
    fn reserve_to(&mut self, end: usize);
    /// The allocation: its start and size in bytes.
    fn allocation(&self) -> (*const u8, usize);
    /// # Safety
    /// As [`Vec::set_len`].
    unsafe fn set_len(&mut self, len: usize);
}

impl<T> Vector for Vec<T> {
    fn len(&self) -> usize {
        Vec::len(self)
    }

    fn capacity(&self) -> usize {
        Vec::capacity(self)
    }

    fn reserve_to(&mut self, end: usize) {
        self.reserve(end.saturating_sub(Vec::len(self)));
    }

    fn allocation(&self) -> (*const u8, usize) {
        (self.as_ptr().cast(), Vec::capacity(self) * size_of::<T>())
    }

    unsafe fn set_len(&mut self, len: usize) {
        unsafe { Vec::set_len(self, len) }
    }
}

/// Valid rows, column by column.
pub struct CleanColumns {
    pub(crate) timestamp: Vec<u8>,
    pub(crate) day_of_week: VarColumn,
    pub(crate) event_time: Vec<i64>,
    pub user_id: VarColumn,
    pub action: VarColumn,
    pub extra: VarColumn,
    pub(crate) extra_valid: Vec<bool>,
}

impl CleanColumns {
    /// Room for `rows` rows cut from `bytes` bytes of input. `extra` can never outgrow its input
    /// and reserving is only address space until written, so growth (a copy of the column, and
    /// fresh pages to fault in) is rare.
    pub fn with_capacity(rows: usize, bytes: usize) -> Self {
        Self {
            timestamp: Vec::with_capacity(rows * 19),
            day_of_week: VarColumn::with_capacity(rows, rows * 9),
            event_time: Vec::with_capacity(rows),
            user_id: VarColumn::with_capacity(rows, rows * 32),
            action: VarColumn::with_capacity(rows, rows * 16),
            extra: VarColumn::with_capacity(rows, bytes),
            extra_valid: Vec::with_capacity(rows),
        }
    }

    /// Empty columns with room for rows up to `room` (a [`Cursor`]).
    pub fn with_room(room: &Cursor) -> Self {
        let mut columns = Self::with_capacity(0, 0);
        columns.reserve(room);
        columns
    }

    /// Asks for transparent huge pages for every buffer's room (see [`crate::memory`]).
    pub fn advise_huge_pages(&self) {
        for vector in self.vectors() {
            let (start, bytes) = vector.allocation();
            memory::advise_huge_pages(start, bytes);
        }
    }

    /// Empties the columns, keeping their room: a worker's scratch, reused piece after piece.
    pub fn clear(&mut self) {
        self.timestamp.clear();
        self.day_of_week.clear();
        self.event_time.clear();
        self.user_id.clear();
        self.action.clear();
        self.extra.clear();
        self.extra_valid.clear();
    }

    /// Every buffer, in [`Cursor`] order.
    fn vectors(&self) -> [&dyn Vector; 11] {
        let (dow, uid, act, ext) = (&self.day_of_week, &self.user_id, &self.action, &self.extra);
        [
            &self.timestamp,
            &dow.values,
            &dow.offsets,
            &self.event_time,
            &uid.values,
            &uid.offsets,
            &act.values,
            &act.offsets,
            &ext.values,
            &ext.offsets,
            &self.extra_valid,
        ]
    }

    /// Every buffer, in [`Cursor`] order.
    pub(crate) fn vectors_mut(&mut self) -> [&mut dyn Vector; 11] {
        let (dow, uid, act, ext) = (
            &mut self.day_of_week,
            &mut self.user_id,
            &mut self.action,
            &mut self.extra,
        );
        [
            &mut self.timestamp,
            &mut dow.values,
            &mut dow.offsets,
            &mut self.event_time,
            &mut uid.values,
            &mut uid.offsets,
            &mut act.values,
            &mut act.offsets,
            &mut ext.values,
            &mut ext.offsets,
            &mut self.extra_valid,
        ]
    }

    /// Where the next rows go.
    pub fn cursor(&self) -> Cursor {
        self.vectors().map(|v| v.len())
    }

    /// How far rows can go without growing a buffer.
    pub fn capacity(&self) -> Cursor {
        self.vectors().map(|v| v.capacity())
    }

    /// Makes room for rows up to `end`.
    pub fn reserve(&mut self, end: &Cursor) {
        for (vector, end) in self.vectors_mut().into_iter().zip(end) {
            vector.reserve_to(*end);
        }
    }

    /// Appends the instant's three derived columns: `text` and `weekday` as formatted by a
    /// [`crate::timestamp::DateCache`].
    #[inline]
    pub fn push_instant(&mut self, instant: Instant, text: &[u8; 19], weekday: &str) {
        self.timestamp.extend_from_slice(text);
        self.day_of_week.push(weekday.as_bytes());
        self.event_time.push(instant.micros);
    }

    #[inline]
    pub fn end_extra(&mut self, present: bool) {
        self.extra.end_value();
        self.extra_valid.push(present);
    }

    pub fn finish(self) -> Result<RecordBatch, CoreError> {
        let rows = self.event_time.len();
        let timestamp_offsets: Vec<i32> = (0..=rows).map(|i| (i * 19) as i32).collect();
        if i32::try_from(self.timestamp.len()).is_err() {
            return Err(CoreError::InputTooLarge {
                what: "the timestamp column",
                bytes: self.timestamp.len(),
            });
        }
        debug_assert!(self.timestamp.is_ascii());
        // SAFETY: the offsets step by 19 up to the values' length (checked to fit i32 above),
        // and the values are ASCII: `DateCache::format` writes digits and punctuation only.
        let timestamp = unsafe {
            StringArray::new_unchecked(
                OffsetBuffer::new_unchecked(ScalarBuffer::from(timestamp_offsets)),
                Buffer::from_vec(self.timestamp),
                None,
            )
        };
        let event_time = TimestampMicrosecondArray::new(ScalarBuffer::from(self.event_time), None)
            .with_timezone("UTC");
        let extra_nulls = if self.extra_valid.iter().all(|&v| v) {
            None
        } else {
            Some(NullBuffer::from(self.extra_valid))
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(timestamp),
            self.day_of_week.into_strings(None)?,
            Arc::new(event_time),
            self.user_id.into_strings(None)?,
            self.action.into_strings(None)?,
            self.extra.into_strings(extra_nulls)?,
        ];
        Ok(RecordBatch::try_new(CLEAN_SCHEMA.clone(), columns)?)
    }
}

/// Invalid lines with their reasons.
#[derive(Default)]
pub struct ErrorColumns {
    pub line: Vec<i64>,
    error: VarColumn,
    detail: VarColumn,
    raw: VarColumn,
}

impl ErrorColumns {
    /// The records of `parts`, in order, as one set of columns.
    pub fn merge(parts: &[&ErrorColumns]) -> Self {
        Self {
            line: gather(parts, |p| &p.line),
            error: VarColumn::gather(parts, |p| &p.error),
            detail: VarColumn::gather(parts, |p| &p.detail),
            raw: VarColumn::gather(parts, |p| &p.raw),
        }
    }

    pub fn push(&mut self, line: i64, code: &str, detail: &str, raw: &[u8]) {
        self.line.push(line);
        self.error.push(code.as_bytes());
        self.detail.push(detail.as_bytes());
        self.raw.push(raw);
    }

    pub fn finish(self) -> Result<RecordBatch, CoreError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::new(ScalarBuffer::from(self.line), None)),
            self.error.into_strings(None)?,
            self.detail.into_strings(None)?,
            self.raw.into_binary()?,
        ];
        Ok(RecordBatch::try_new(ERROR_SCHEMA.clone(), columns)?)
    }
}
