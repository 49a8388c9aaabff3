//! Stitching the pieces of a parallel run back together, in parallel.
//!
//! Clean rows are copied by each worker straight to their final place ([`place_pieces`]), so
//! the big output is written once. Error records, usually few, are concatenated at the end
//! ([`crate::concat`]).

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use rayon::prelude::*;

use crate::columns::{BUFFERS, Buffer, CleanColumns, Cursor};

/// Where the rows of `piece` end when they are placed at `at`.
fn advance(at: &Cursor, piece: &CleanColumns) -> Cursor {
    let mut end = *at;
    for ((end, buffer), len) in end.iter_mut().zip(piece.buffers()).zip(piece.cursor()) {
        *end += len - buffer.leading();
    }
    end
}

/// The start of a buffer that several threads fill at disjoint places.
#[derive(Clone, Copy)]
struct Start(*mut u8);

// SAFETY: a `Start` is only written through `SharedColumns::write`, whose callers promise that
// no two writes overlap and that nothing reads the buffer until every write is done.
unsafe impl Send for Start {}
unsafe impl Sync for Start {}

/// Columns with room reserved up front, filled by several threads at once: each piece's rows
/// are copied straight to their final place (a [`Cursor`]), so the output is written once.
struct SharedColumns {
    columns: CleanColumns,
    capacity: Cursor,
    /// Where each buffer starts, in [`Cursor`] order.
    starts: [Start; BUFFERS],
}

impl SharedColumns {
    fn new(mut columns: CleanColumns) -> Self {
        Self {
            capacity: columns.capacity(),
            starts: columns
                .buffers_mut()
                .map(|mut b| Start(b.vector_mut().start_mut())),
            columns,
        }
    }

    /// Whether rows ending at `end` fit in the reserved room.
    fn fits(&self, end: &Cursor) -> bool {
        end.iter().zip(&self.capacity).all(|(e, c)| e <= c)
    }

    /// Copies the rows of `piece` to `at`.
    ///
    /// # Safety
    /// `advance(at, piece)` [`fits`](Self::fits), and no other write covers any part of the
    /// range from `at` to there.
    unsafe fn write(&self, at: &Cursor, piece: &CleanColumns) {
        for (i, buffer) in piece.buffers().into_iter().enumerate() {
            let Start(start) = self.starts[i];
            match buffer {
                // SAFETY: buffer `i` of any `CleanColumns` has the same element type (there is
                // one layout), it has room up to `advance(at, piece)`, and the range from `at`
                // is this write's alone (the caller's promise).
                Buffer::Values(values) => unsafe { values.copy_to(start, at[i]) },
                Buffer::Offsets(offsets) => {
                    // The piece's offsets start at 0; here they start where its values were put,
                    // in the buffer before. Totals beyond i32 wrap here and are refused when the
                    // array is built.
                    let base = at[i - 1] as i32;
                    let dst = start.cast::<i32>();
                    for (k, offset) in offsets[1..].iter().enumerate() {
                        // SAFETY: as above; `offsets[1..]` are the piece's rows.
                        unsafe { dst.add(at[i] + k).write(offset.wrapping_add(base)) };
                    }
                }
            }
        }
    }

    /// The columns holding every row up to `end`.
    ///
    /// # Safety
    /// `end` fits, and every row from the start of the room to `end` was written.
    unsafe fn finish(self, end: &Cursor) -> CleanColumns {
        let mut columns = self.columns;
        for (mut buffer, len) in columns.buffers_mut().into_iter().zip(end) {
            // SAFETY: `len` is within the room, and every element up to it was written.
            unsafe { buffer.vector_mut().set_len(*len) };
        }
        columns
    }
}

/// Runs `run` on every piece on `threads` workers, the clean rows going straight into
/// `reserved`; returns the rows, and what `run` returned for each piece, in input order.
///
/// Workers claim pieces in input order and parse each into a scratch set of columns, small
/// enough to stay in the core's cache. A finished piece is given its place as soon as every
/// piece before it has one, and copied there at once, while later pieces are being parsed; one
/// that finishes early is parked (its worker takes a spare scratch and goes on) and placed by
/// whoever places the piece before it. Nobody waits, and the output is written once, with no
/// piece-sized buffers to merge. A piece that does not fit the reserved room (lines shorter
/// than the caller reckoned with) is set aside, with every piece after it, and appended at the
/// end.
pub fn place_pieces<R: Default + Send>(
    pieces: &[&[u8]],
    threads: usize,
    reserve: impl Fn(&CleanColumns) -> CleanColumns + Sync,
    scratch: impl Fn() -> CleanColumns + Sync,
    run: impl Fn(&[u8], &mut CleanColumns) -> R + Sync,
) -> (CleanColumns, Vec<R>) {
    // Set up when the first piece is done, from its rows (no piece is placed before it).
    let shared: OnceLock<SharedColumns> = OnceLock::new();
    let empty = CleanColumns::default().cursor();
    let frontier = Mutex::new(Frontier {
        next: 0,
        end: empty,
        full: false,
        parked: BTreeMap::new(),
        aside: Vec::new(),
        spare: Vec::new(),
    });
    let rests: Vec<Mutex<R>> = pieces.iter().map(|_| Mutex::default()).collect();
    let claimed = AtomicUsize::new(0);
    let panicked = Mutex::new(None);
    rayon::scope(|s| {
        for _ in 0..threads.min(pieces.len()) {
            s.spawn(|_| {
                let mut clean = scratch();
                loop {
                    let k = claimed.fetch_add(1, Ordering::Relaxed);
                    let Some(piece) = pieces.get(k) else { break };
                    clean.clear();
                    match catch_unwind(AssertUnwindSafe(|| run(piece, &mut clean))) {
                        Ok(rest) => *lock(&rests[k]) = rest,
                        Err(panic) => {
                            // The pieces after this one stay parked; the panic is raised
                            // again once every worker is done.
                            *lock(&panicked) = Some(panic);
                            break;
                        }
                    }
                    if k == 0 {
                        let room = reserve(&clean);
                        assert_eq!(room.cursor(), empty, "`reserve` returns empty columns");
                        shared.get_or_init(|| SharedColumns::new(room));
                    }
                    let fits = |end: &Cursor| shared.get().is_some_and(|s| s.fits(end));
                    let placed = lock(&frontier).hand_in(k, clean, fits);
                    if let Some(shared) = shared.get() {
                        for (at, piece) in &placed {
                            // SAFETY: `hand_in` gave each piece its own range, within the room.
                            unsafe { shared.write(at, piece) };
                        }
                    }
                    let mut done = placed.into_iter().map(|(_, piece)| piece);
                    let mut f = lock(&frontier);
                    clean = done
                        .next()
                        .or_else(|| f.spare.pop())
                        .unwrap_or_else(&scratch);
                    f.spare.extend(done);
                }
            });
        }
    });
    if let Some(panic) = lock(&panicked).take() {
        resume_unwind(panic);
    }
    let f = frontier.into_inner().unwrap_or_else(|e| e.into_inner());
    debug_assert!(f.next == pieces.len() && f.parked.is_empty());
    let mut clean = match shared.into_inner() {
        // SAFETY: the scope has joined every worker, so every write is done, and the placed
        // pieces tile the range from the start to `f.end`.
        Some(shared) => unsafe { shared.finish(&f.end) },
        None => CleanColumns::with_capacity(0, 0), // no pieces
    };
    if !f.aside.is_empty() {
        let mut spots = Vec::with_capacity(f.aside.len());
        let mut end = f.end;
        for piece in &f.aside {
            spots.push((end, piece));
            end = advance(&end, piece);
        }
        clean.reserve(&end);
        let shared = SharedColumns::new(clean);
        spots
            .par_iter()
            // SAFETY: room for `end` was reserved, and the spots tile the range up to it.
            .for_each(|(at, piece)| unsafe { shared.write(at, piece) });
        // SAFETY: every spot up to `end` was written just above.
        clean = unsafe { shared.finish(&end) };
    }
    let rests = rests
        .into_iter()
        .map(|r| r.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect();
    (clean, rests)
}

/// Which pieces have a place in the output, and where the next one goes.
struct Frontier {
    /// The first piece without a place.
    next: usize,
    /// Where it goes: the end of the pieces placed so far.
    end: Cursor,
    /// The room ran out: this piece and every later one are set aside.
    full: bool,
    /// Finished pieces waiting for an earlier one to finish.
    parked: BTreeMap<usize, CleanColumns>,
    /// Pieces that did not fit, in input order.
    aside: Vec<CleanColumns>,
    /// Scratch columns to reuse.
    spare: Vec<CleanColumns>,
}

impl Frontier {
    /// Takes finished piece `k`; returns the pieces that now have a place (`k` and the parked
    /// ones after it, unless `k` is early), each with where its rows go.
    fn hand_in(
        &mut self,
        k: usize,
        piece: CleanColumns,
        fits: impl Fn(&Cursor) -> bool,
    ) -> Vec<(Cursor, CleanColumns)> {
        let mut placed = Vec::new();
        if k != self.next {
            self.parked.insert(k, piece);
            return placed;
        }
        let mut piece = piece;
        loop {
            let end = advance(&self.end, &piece);
            self.full = self.full || !fits(&end);
            if self.full {
                self.aside.push(piece);
            } else {
                placed.push((self.end, piece));
                self.end = end;
            }
            self.next += 1;
            match self.parked.remove(&self.next) {
                Some(next) => piece = next,
                None => return placed,
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_piece_neither_hangs_nor_is_lost() {
        let pieces: Vec<&[u8]> = vec![b"a", b"b", b"boom", b"c", b"d", b"e"];
        for threads in [1, 2, 4] {
            let outcome = catch_unwind(|| {
                place_pieces(
                    &pieces,
                    threads,
                    |_| CleanColumns::with_capacity(16, 16),
                    || CleanColumns::with_capacity(1, 1),
                    |piece, _| assert_ne!(piece, b"boom", "bad piece"),
                )
            });
            let Err(panic) = outcome else {
                panic!("the panic is raised again")
            };
            assert!(
                panic
                    .downcast_ref::<String>()
                    .unwrap()
                    .contains("bad piece")
            );
        }
    }
}
