//! Several slices laid end to end in one vector, each copied by its own rayon task: how the
//! pieces' error records (usually few) are joined after a parallel run.

use rayon::prelude::*;

/// `parts` laid end to end in one vector, each part copied by its own rayon task.
pub fn par_concat<T: Copy + Send + Sync>(parts: &[&[T]]) -> Vec<T> {
    let total = parts.iter().map(|p| p.len()).sum();
    let mut out: Vec<T> = Vec::with_capacity(total);
    let mut rest = &mut out.spare_capacity_mut()[..total];
    let mut slots = Vec::with_capacity(parts.len());
    for part in parts {
        let (slot, tail) = rest.split_at_mut(part.len());
        slots.push(slot);
        rest = tail;
    }
    slots
        .into_par_iter()
        .zip(parts.par_iter())
        .for_each(|(slot, part)| {
            for (dst, src) in slot.iter_mut().zip(part.iter()) {
                dst.write(*src);
            }
        });
    // SAFETY: the slots tile `out[..total]` exactly and every element was written above.
    unsafe { out.set_len(total) };
    out
}

/// Arrow offsets of several columns (each starting at 0) as the offsets of their concatenation.
pub fn par_concat_offsets(parts: &[&[i32]]) -> Vec<i32> {
    let tails: Vec<&[i32]> = parts.iter().map(|p| &p[1..]).collect();
    let mut out = Vec::with_capacity(1 + tails.iter().map(|t| t.len()).sum::<usize>());
    out.push(0);
    out.extend(par_concat(&tails));
    // Each part's offsets move up by the bytes of the parts before it. Totals beyond i32 wrap
    // here and are refused when the array is built (see `VarColumn::arrow_buffers`).
    let mut base = 0i32;
    let mut rest = &mut out[1..];
    let mut jobs = Vec::with_capacity(parts.len());
    for part in parts {
        let (slot, tail) = rest.split_at_mut(part.len() - 1);
        jobs.push((slot, base));
        base = base.wrapping_add(*part.last().unwrap_or(&0));
        rest = tail;
    }
    jobs.into_par_iter().for_each(|(slot, base)| {
        for o in slot {
            *o = o.wrapping_add(base);
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concatenates_in_order() {
        let parts: [&[u8]; 4] = [b"ab", b"", b"cde", b"f"];
        assert_eq!(par_concat(&parts), b"abcdef".to_vec());
        assert_eq!(par_concat::<i64>(&[]), Vec::<i64>::new());
    }

    #[test]
    fn rebases_offsets() {
        let parts: [&[i32]; 3] = [&[0, 2, 5], &[0], &[0, 1, 1, 4]];
        assert_eq!(par_concat_offsets(&parts), vec![0, 2, 5, 6, 6, 9]);
        assert_eq!(par_concat_offsets(&[]), vec![0]);
    }
}
