//! Arrow output: column buffers filled row by row, turned into record batches without copying.

use std::sync::{Arc, LazyLock};

use arrow_array::{
    ArrayRef, BinaryArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_buffer::{Buffer as ArrowBuffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::concat::{par_concat, par_concat_offsets};
use crate::errors::CoreError;
use crate::memory;
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
        // Wrap-around is caught in `arrow_buffers` before any array is built.
        self.offsets.push(self.values.len() as i32);
    }

    /// One variable-length column of every part, laid end to end (see [`crate::concat`]).
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

    fn arrow_buffers(self) -> Result<(OffsetBuffer<i32>, ArrowBuffer), CoreError> {
        if i32::try_from(self.values.len()).is_err() {
            return Err(CoreError::InputTooLarge {
                what: "a column of the output",
                bytes: self.values.len(),
            });
        }
        Ok((
            OffsetBuffer::new(ScalarBuffer::from(self.offsets)),
            ArrowBuffer::from_vec(self.values),
        ))
    }

    /// The values must be UTF-8 (checked in debug builds): every line is validated as UTF-8
    /// before any of its bytes is copied, and cuts only happen at ASCII JSON punctuation.
    fn into_strings(self, nulls: Option<NullBuffer>) -> Result<ArrayRef, CoreError> {
        let (offsets, values) = self.arrow_buffers()?;
        debug_assert!(std::str::from_utf8(values.as_slice()).is_ok());
        // SAFETY: offsets are monotonic by construction (`end_value` after each append), the
        // last one equals the values' length (checked to fit i32 in `arrow_buffers`), and the values
        // are UTF-8 as documented above.
        Ok(Arc::new(unsafe {
            StringArray::new_unchecked(offsets, values, nulls)
        }))
    }

    fn into_binary(self) -> Result<ArrayRef, CoreError> {
        let (offsets, values) = self.arrow_buffers()?;
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

/// Valid rows, column by column.
pub struct CleanColumns {
    timestamp: Vec<u8>,
    day_of_week: VarColumn,
    event_time: Vec<i64>,
    pub user_id: VarColumn,
    pub action: VarColumn,
    pub extra: VarColumn,
    extra_valid: Vec<bool>,
}

/// The buffers of [`CleanColumns`] in the order of a [`Cursor`], borrowed from `$columns` with
/// `&` or, given `mut`, with `&mut`: the one list of the layout, which the builder and
/// [`crate::merge`] both go through ([`CleanColumns::buffers`], [`CleanColumns::buffers_mut`]).
macro_rules! layout {
    ($columns:expr $(, $mut:ident)?) => {{
        let c = $columns;
        [
            Buffer::Values(&$($mut)? c.timestamp),
            Buffer::Values(&$($mut)? c.day_of_week.values),
            Buffer::Offsets(&$($mut)? c.day_of_week.offsets),
            Buffer::Values(&$($mut)? c.event_time),
            Buffer::Values(&$($mut)? c.user_id.values),
            Buffer::Offsets(&$($mut)? c.user_id.offsets),
            Buffer::Values(&$($mut)? c.action.values),
            Buffer::Offsets(&$($mut)? c.action.offsets),
            Buffer::Values(&$($mut)? c.extra.values),
            Buffer::Offsets(&$($mut)? c.extra.offsets),
            Buffer::Values(&$($mut)? c.extra_valid),
        ]
    }};
}

/// How many buffers [`CleanColumns`] has: one per fixed-width column, values and offsets per
/// variable-length one, and the validity of `extra`.
pub const BUFFERS: usize = 11;

/// Where the next rows go in a [`CleanColumns`]: the length of each of its buffers, in the
/// order of the layout.
pub type Cursor = [usize; BUFFERS];

/// One buffer of the layout.
pub enum Buffer<V, O> {
    /// Elements that stay as they are when rows move to another place.
    Values(V),
    /// The Arrow offsets of the values in the buffer just before: they start with a leading 0,
    /// and move up by where the values start when rows move to another place.
    Offsets(O),
}

/// A buffer borrowed to read.
pub type BufferRef<'a> = Buffer<&'a dyn Vector, &'a Vec<i32>>;
/// A buffer borrowed to change.
pub type BufferMut<'a> = Buffer<&'a mut dyn Vector, &'a mut Vec<i32>>;

impl BufferRef<'_> {
    pub fn vector(&self) -> &dyn Vector {
        match self {
            Buffer::Values(v) => *v,
            Buffer::Offsets(o) => *o,
        }
    }

    /// Elements it holds with no rows: the leading 0 of offsets.
    pub fn leading(&self) -> usize {
        match self {
            Buffer::Values(_) => 0,
            Buffer::Offsets(_) => 1,
        }
    }
}

impl BufferMut<'_> {
    pub fn vector_mut(&mut self) -> &mut dyn Vector {
        match self {
            Buffer::Values(v) => *v,
            Buffer::Offsets(o) => *o,
        }
    }
}

/// What the layout needs of each buffer, whatever its element type.
pub trait Vector {
    fn len(&self) -> usize;
    fn capacity(&self) -> usize;
    /// Makes room for `end` elements in all.
    fn reserve_to(&mut self, end: usize);
    /// Keeps the first `len` elements.
    fn truncate(&mut self, len: usize);
    /// The allocation: its start and size in bytes.
    fn allocation(&self) -> (*const u8, usize);
    /// The start of the allocation, to write through.
    fn start_mut(&mut self) -> *mut u8;
    /// # Safety
    /// As [`Vec::set_len`].
    unsafe fn set_len(&mut self, len: usize);
    /// Copies the elements to `dst`, the start of an allocation of the same element type, from
    /// element `at` on.
    ///
    /// # Safety
    /// That allocation has room for `at + self.len()` elements, and nothing else reads or writes
    /// that range meanwhile.
    unsafe fn copy_to(&self, dst: *mut u8, at: usize);
}

impl<T: Copy> Vector for Vec<T> {
    fn len(&self) -> usize {
        Vec::len(self)
    }

    fn capacity(&self) -> usize {
        Vec::capacity(self)
    }

    fn reserve_to(&mut self, end: usize) {
        self.reserve(end.saturating_sub(Vec::len(self)));
    }

    fn truncate(&mut self, len: usize) {
        Vec::truncate(self, len);
    }

    fn allocation(&self) -> (*const u8, usize) {
        (self.as_ptr().cast(), Vec::capacity(self) * size_of::<T>())
    }

    fn start_mut(&mut self) -> *mut u8 {
        self.as_mut_ptr().cast()
    }

    unsafe fn set_len(&mut self, len: usize) {
        unsafe { Vec::set_len(self, len) }
    }

    unsafe fn copy_to(&self, dst: *mut u8, at: usize) {
        // SAFETY: as the caller promises; `dst` came from a `Vec<T>`, so it is aligned for `T`.
        unsafe { std::ptr::copy_nonoverlapping(self.as_ptr(), dst.cast::<T>().add(at), self.len()) }
    }
}

impl Default for CleanColumns {
    fn default() -> Self {
        Self::with_capacity(0, 0)
    }
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

    /// Empty columns with room for rows up to `room`.
    pub fn with_room(room: &Cursor) -> Self {
        let mut columns = Self::default();
        columns.reserve(room);
        columns
    }

    /// Every buffer, in [`Cursor`] order.
    pub fn buffers(&self) -> [BufferRef<'_>; BUFFERS] {
        layout!(self)
    }

    /// Every buffer, in [`Cursor`] order.
    pub fn buffers_mut(&mut self) -> [BufferMut<'_>; BUFFERS] {
        layout!(self, mut)
    }

    /// Where the next rows go.
    pub fn cursor(&self) -> Cursor {
        self.buffers().map(|b| b.vector().len())
    }

    /// How far rows can go without growing a buffer.
    pub fn capacity(&self) -> Cursor {
        self.buffers().map(|b| b.vector().capacity())
    }

    /// Makes room for rows up to `end`.
    pub fn reserve(&mut self, end: &Cursor) {
        for (mut buffer, end) in self.buffers_mut().into_iter().zip(end) {
            buffer.vector_mut().reserve_to(*end);
        }
    }

    /// Empties the columns, keeping their room: a worker's scratch, reused piece after piece.
    pub fn clear(&mut self) {
        let empty = self.buffers().map(|b| b.leading());
        for (mut buffer, len) in self.buffers_mut().into_iter().zip(empty) {
            buffer.vector_mut().truncate(len);
        }
    }

    /// Asks for transparent huge pages for every buffer's room (see [`crate::memory`]).
    pub fn advise_huge_pages(&self) {
        for buffer in self.buffers() {
            let (start, bytes) = buffer.vector().allocation();
            memory::advise_huge_pages(start, bytes);
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
                ArrowBuffer::from_vec(self.timestamp),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_follow_their_values_in_the_layout() {
        let empty = CleanColumns::default();
        assert_eq!(empty.cursor(), [0, 0, 1, 0, 0, 1, 0, 1, 0, 1, 0]);
        let mut columns = CleanColumns::default();
        for _ in 0..2 {
            columns.push_instant(Instant { micros: 0 }, b"1970-01-01 00:00:00", "Thursday");
            columns.user_id.push(b"u1");
            columns.action.push(b"login");
            columns.extra.values.extend_from_slice(b"{}");
            columns.end_extra(true);
        }
        let buffers = columns.buffers();
        for (i, buffer) in buffers.iter().enumerate() {
            if let Buffer::Offsets(offsets) = buffer {
                assert_eq!(offsets.len(), 3);
                let values = buffers[i - 1].vector().len();
                assert_eq!(*offsets.last().unwrap() as usize, values, "buffer {i}");
            }
        }
        columns.clear();
        assert_eq!(columns.cursor(), empty.cursor());
    }
}
